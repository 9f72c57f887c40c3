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


ExtractContentDifferences = ExtractDifferences.with_instructions(
    """You are a user behavior analyst. Compare the current user's review of an item with other users' reviews of
    the same item. Find the dimensions on which the current user's review differs: in what it is about (which
    aspects of the item the user discusses, what they praise or criticize, the comparisons and references they
    make, their recurring words and phrases) as well as in how it is written (tone, length, vocabulary,
    structure). Choose the dimensions yourself, as many as the reviews support, and describe each as a habit of
    this user that their other reviews would show too, not as a fact about this item. For each, give a short name,
    a one-sentence definition, and a description of how the current user's review differs from the others.""")
"""Step 1 looking at what the user writes about too: the style-only features of `ExtractDifferences` were generic at
1.5B ("sentence length" in 56 of 80 comparisons) and almost never named what the user says about the music, which
n-gram overlap rewards (README, issue 10's criteria)."""


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
