"""A review-generation task: everything the program may see for one user and target item."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .loading import ReviewData
from .retrieval import comparable_items, history_query, retrieve_history
from .schema import Item, Review, UserRow


class SampleKey(NamedTuple):
    """A sample is a user and a target, the item and the time of the review: a user may have several."""

    user_id: str
    asin: str
    timestamp: int | None  # None only in rows written before the key had it

    def __str__(self) -> str:
        return f"{self.user_id}/{self.asin}@{self.timestamp}"


@dataclass(frozen=True)
class Comparison:
    """A profile item the user reviewed, with every other user's review of it (Step 0 picks from these)."""

    item: Item
    user_review: Review
    others: tuple[tuple[str, Review], ...]


@dataclass(frozen=True)
class ReviewTask:
    """One sample. `target.text` is the reference and never reaches a prompt; its rating and title do."""

    user_id: str
    item: Item
    target: Review
    history: tuple[tuple[Item, Review], ...]
    comparisons: tuple[Comparison, ...]

    @property
    def reference(self) -> str:
        return self.target.text

    @property
    def key(self) -> SampleKey:
        return SampleKey(self.user_id, self.item.asin, self.target.timestamp)


def build_task(row: UserRow, data: ReviewData, num_retrieved: int, num_compared: int, m: int) -> ReviewTask:
    """Retrieve the history (BM25, `num_retrieved`) and the comparable items (`num_compared`, each with >= m others)."""
    item = data.items[row.data.asin]
    query = history_query(row.data, item)
    history = retrieve_history(row.profile, data.items, query, k=num_retrieved)
    compared = retrieve_history(comparable_items(row.profile, data, row.user_id, m), data.items, query,
                                k=num_compared) if num_compared > 0 else []
    comparisons = tuple(
        Comparison(
            item=_item(data, review.asin),
            user_review=review,
            others=tuple(data.item_reviews(review.asin, exclude_user=row.user_id)),
        )
        for review in compared
    )
    return ReviewTask(
        user_id=row.user_id,
        item=item,
        target=row.data,
        history=tuple((_item(data, review.asin), review) for review in history),
        comparisons=comparisons,
    )


def _item(data: ReviewData, asin: str) -> Item:
    return data.items.get(asin) or Item(asin=asin, title="", description="")
