import dspy


class InferPreferences(dspy.Signature):
    """You are a user behavior analyst. From a user's past reviews, infer their preferences as a short summary
    in plain language: what they care about in an item and how they judge it, how they rate, and how they write
    (length, tone, vocabulary, habits). Write what holds across the reviews, not a retelling of each; the
    summary stands in for the reviews when someone writes a new review in this user's voice."""

    past_reviews: str = dspy.InputField(desc="the user's past reviews, latest first")
    preferences: str = dspy.OutputField(desc="the user's preferences and writing habits, at most five sentences")
