import dspy


class DistillPersona(dspy.Signature):
    """You are a user behavior analyst building a persona of a user from their past reviews, in two layers.
    Facts: short, specific statements the reviews support, each about one preference, dislike, rating habit or
    writing habit (e.g. "dislikes muddy mixes", "lists the best tracks by name"). Traits: a few higher-level
    statements of who the user is as a reviewer, each induced from several facts."""

    past_reviews: str = dspy.InputField(desc="the user's past reviews, latest first")
    facts: list[str] = dspy.OutputField(desc="atomic facts about the user, one short sentence each")
    traits: list[str] = dspy.OutputField(desc="higher-level traits of the user, one short sentence each")


class RefinePersona(dspy.Signature):
    """You are a user behavior analyst refining a user's persona with the personas of similar users, who
    reviewed many of the same items. Keep every trait the user's facts support, sharpen vague ones, and add a
    trait the similar users share only where the user's facts suggest it too; never copy a trait the facts
    contradict."""

    persona: str = dspy.InputField(desc="the user's facts and traits")
    similar_personas: str = dspy.InputField(desc="the traits of users who reviewed many of the same items")
    traits: list[str] = dspy.OutputField(desc="the user's refined traits, one short sentence each")
