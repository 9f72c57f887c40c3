import dspy

from .features import DifferenceFeature


class ExtractDifferences(dspy.Signature):
    """You are a user behavior analyst. Compare the current user's review of an item with other users'
    reviews of the same item. Find the dimensions on which the current user's review differs in style
    and expression (not in the facts about the item): choose the dimensions yourself, as many as the
    reviews support. For each, give a short name, a one-sentence definition, and a description of how the
    current user's review differs from the others."""

    item: str = dspy.InputField(desc="title and description of the item")
    user_review: str = dspy.InputField(desc="the current user's review: rating, title and text")
    other_reviews: str = dspy.InputField(desc="reviews of the same item by representative other users")
    differences: list[DifferenceFeature] = dspy.OutputField(
        desc="the difference dimensions found, each with name, definition and description"
    )


class ExtractFixedDifferences(dspy.Signature):
    """You are a user behavior analyst. Compare the current user's review of an item with other users'
    reviews of the same item, on exactly three dimensions: Writing Style (lexical choices and syntactic
    structure), Emotional Style (affective tone), and Semantic Style (information density and contextual
    coherence). For each, describe how the current user's review differs from the others, independent of
    the facts about the item."""

    item: str = dspy.InputField(desc="title and description of the item")
    user_review: str = dspy.InputField(desc="the current user's review: rating, title and text")
    other_reviews: str = dspy.InputField(desc="reviews of the same item by representative other users")
    differences: list[DifferenceFeature] = dspy.OutputField(
        desc="three entries, named Writing Style, Emotional Style and Semantic Style"
    )
