"""How items and reviews are written into prompts: short, labelled plain text, the same for every stage."""

from __future__ import annotations

from collections.abc import Iterable

from ..data.schema import Item, Review
from ..signatures import DifferenceFeature


def format_item(item: Item) -> str:
    text = item.title or "(untitled item)"
    return f"{text}. {item.description}".strip() if item.description else text


def format_review(review: Review) -> str:
    return f"Rating: {review.rating:g}/5. Title: {review.title}\n{review.text}"


def format_others(reviews: Iterable[Review]) -> str:
    return "\n\n".join(f"Other user {i}: {format_review(review)}" for i, review in enumerate(reviews, 1))


def format_history(history: Iterable[tuple[Item, Review]]) -> str:
    blocks = [
        f"Review {i} (of {item.title or 'an item'}), rating {review.rating:g}/5, titled \"{review.title}\":\n{review.text}"
        for i, (item, review) in enumerate(history, 1)
    ]
    return "\n\n".join(blocks) if blocks else "(no past reviews)"


def format_features(features: Iterable[DifferenceFeature]) -> str:
    return "\n".join(f"{i}. {feature.render()}" for i, feature in enumerate(features, 1))


def format_numbered_features(features: list[DifferenceFeature]) -> str:
    """For Validate: the numbering is stated, so that a small model answers 1..N and not 0..N-1."""
    return f"{len(features)} features, numbered 1 to {len(features)}:\n{format_features(features)}"


def format_differences(per_item: Iterable[tuple[Item, list[DifferenceFeature]]]) -> str:
    blocks = [f"{item.title or 'An item'}:\n{format_features(features)}" for item, features in per_item if features]
    return "\n\n".join(blocks) if blocks else "(no differences found)"


def format_contrasts(per_item: Iterable[tuple[Item, Review, list[Review]]]) -> str:
    """For CICL: each compared item with the user's review as the positive example, the others' as negatives."""
    blocks = [
        f"{item.title or 'An item'}:\nYour review (write like this): {format_review(own)}\n"
        f"Other customers' reviews (not like these):\n{format_others(others)}"
        for item, own, others in per_item
    ]
    return "\n\n".join(blocks) if blocks else "(no contrast examples)"


def format_persona(traits: Iterable[str], facts: Iterable[str]) -> str:
    """A P-DB persona as Generate's profile (or Refine's input): its traits, then its facts."""
    traits, facts = list(traits), list(facts)
    blocks = [f"{label}:\n" + "\n".join(f"- {line}" for line in lines)
              for label, lines in (("Traits", traits), ("Facts", facts)) if lines]
    return "\n\n".join(blocks) if blocks else "(no persona)"


def format_similar_personas(personas: Iterable[list[str]]) -> str:
    """For P-DB's Refine: the traits of each similar user."""
    blocks = [f"Similar user {i}:\n" + "\n".join(f"- {trait}" for trait in traits)
              for i, traits in enumerate(personas, 1) if traits]
    return "\n\n".join(blocks) if blocks else "(no similar users)"
