from typing import Literal

import dspy

CATEGORIES = ("Writing", "Emotion", "Semantics", "Structure", "Pragmatics")
CRITERIA = ("comparative", "atomic", "clear", "categorized", "consistent")


class JudgeFeature(dspy.Signature):
    """You audit a difference feature: a claim about how one user's review differs from other users'
    reviews of the same item. Judge it on five criteria, each true or false, and put it in one category:
    Writing (word choice, syntax, register), Emotion (affect, tone, enthusiasm), Semantics (content,
    information, focus), Structure (length, organization, formatting) or Pragmatics (purpose, audience,
    how the review is meant to be used)."""

    feature: str = dspy.InputField(desc="the feature: its name, definition and the difference it describes")
    comparative: bool = dspy.OutputField(desc="it says how the user differs from the others, not only what the user does")
    atomic: bool = dspy.OutputField(desc="it is about one dimension, not several mixed together")
    clear: bool = dspy.OutputField(desc="its name and definition are specific and unambiguous")
    categorized: bool = dspy.OutputField(desc="it fits one of the five categories")
    consistent: bool = dspy.OutputField(desc="its name, definition and description agree with each other")
    category: Literal[CATEGORIES] = dspy.OutputField(  # type: ignore[valid-type]
        desc="the category it belongs to"
    )
