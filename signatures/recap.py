import dspy


class RecapHistory(dspy.Signature):
    """You are a user behavior analyst reading a user's reviews in the order they wrote them, a few at a time.
    Update the summary of the user written so far with the next reviews: what they care about, how they rate,
    and how they write (length, tone, vocabulary, structure). Keep what still holds, add what the new reviews
    show, correct what they contradict; the summary must help someone write a new review in this user's voice."""

    summary_so_far: str = dspy.InputField(desc="the summary of the user's earlier reviews, or (none yet)")
    next_reviews: str = dspy.InputField(desc="the user's next reviews, in the order written")
    summary: str = dspy.OutputField(desc="the updated summary of the user, a short paragraph")
