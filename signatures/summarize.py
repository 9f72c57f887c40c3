import dspy


class SummarizeProfile(dspy.Signature):
    """Given the current user's past reviews and, for some items they reviewed, how their review differs
    from other users' reviews of the same item, write a profile summary of the current user: how they
    write (length, tone, vocabulary, structure), what they care about, and how they rate. The summary
    must help someone write a new review in this user's voice."""

    past_reviews: str = dspy.InputField(desc="the user's past reviews, most relevant first")
    differences: str = dspy.InputField(desc="per item, how the user's review differs from other users' reviews")
    summary: str = dspy.OutputField(desc="a profile summary of the user, a short paragraph")
