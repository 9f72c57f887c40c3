import dspy


class GenerateReview(dspy.Signature):
    """Write the review that the current user would write for the item, in their own voice: match the
    length, tone, vocabulary and habits of their past reviews and their profile summary, and agree with
    the given rating and review title. Write only the review text."""

    item: str = dspy.InputField(desc="title and description of the item to review")
    past_reviews: str = dspy.InputField(desc="the user's past reviews, most relevant first")
    profile_summary: str = dspy.InputField(desc="how this user writes and what they care about")
    rating: float = dspy.InputField(desc="the user's rating of the item, 1 to 5")
    review_title: str = dspy.InputField(desc="the title the user gave the review")
    review: str = dspy.OutputField(desc="the review text, in the user's voice")
