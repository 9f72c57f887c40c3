import dspy


class ValidateDifferences(dspy.Signature):
    """You are a user behavior analyst. You are given an item, the current user's review, other users'
    reviews of the same item, and numbered difference features that claim to describe how the current
    user's review differs from the others. Keep only the features that are supported by the reviews and
    that really distinguish the current user's style and expression; drop those that are wrong, vague,
    about the item's facts rather than the review's style, or true of the other reviews as well."""

    item: str = dspy.InputField(desc="title and description of the item")
    user_review: str = dspy.InputField(desc="the current user's review: rating, title and text")
    other_reviews: str = dspy.InputField(desc="reviews of the same item by representative other users")
    differences: str = dspy.InputField(desc="numbered difference features to check")
    keep: list[int] = dspy.OutputField(desc="the numbers of the features that are valid")


ValidateContentDifferences = ValidateDifferences.with_instructions(
    """You are a user behavior analyst. You are given an item, the current user's review, other users' reviews of
    the same item, and numbered difference features that claim to describe how the current user's review differs
    from the others, in what it is about or in how it is written. Keep only the features that are supported by the
    reviews and that really distinguish the current user; drop those that are wrong, vague, mere facts about this
    item that say nothing about the user, or true of the other reviews as well.""")
"""Step 2 for `ExtractContentDifferences`' features, which may be about what the user discusses: the default
instruction drops those as "about the item's facts"."""
