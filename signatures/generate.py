import dspy


class GenerateReview(dspy.Signature):
    """Write the review that the current user would write for the item, in their own voice: match the
    length, tone, vocabulary and habits of their past reviews and their profile summary, and agree with
    the given rating and review title. Write only the review text."""

    # past reviews first: Summarize reads them first too, so the two calls share a cached prompt prefix
    past_reviews: str = dspy.InputField(desc="the user's past reviews, most relevant first")
    item: str = dspy.InputField(desc="title and description of the item to review")
    profile_summary: str = dspy.InputField(desc="how this user writes and what they care about")
    rating: float = dspy.InputField(desc="the user's rating of the item, 1 to 5")
    review_title: str = dspy.InputField(desc="the title the user gave the review")
    review: str = dspy.OutputField(desc="the review text, in the user's voice")


class GenerateContrastiveReview(dspy.Signature):
    """Write the review that the current user would write for the item, in their own voice. The contrast
    examples pair the user's own reviews of some items (write like these) with other users' reviews of the
    same items (do not write like these): match what sets the user apart in length, tone, vocabulary and
    habits, and agree with the given rating and review title. Write only the review text."""

    past_reviews: str = dspy.InputField(desc="the user's past reviews, most relevant first")
    item: str = dspy.InputField(desc="title and description of the item to review")
    contrast_examples: str = dspy.InputField(
        desc="per item, the user's review (positive example) and other users' reviews of it (negative examples)"
    )
    rating: float = dspy.InputField(desc="the user's rating of the item, 1 to 5")
    review_title: str = dspy.InputField(desc="the title the user gave the review")
    review: str = dspy.OutputField(desc="the review text, in the user's voice")
