"""A review-generation task: everything the program may see for one user and target item."""

from __future__ import annotations

from collections.abc import Sequence
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
class UserHistory:
    """A user's reviews before every target of theirs in the split, oldest first (`ReviewData.earlier_reviews`):
    what a summary made once per user reads, the same for each of their targets."""

    user_id: str
    reviews: tuple[tuple[Item, Review], ...]


@dataclass(frozen=True)
class ReviewTask:
    """One sample. `target.text` is the reference and never reaches a prompt; its rating and title do.

    `history` and `comparisons` are chosen for this target (BM25 with its query); `user_history`,
    `user_comparisons` and `neighbours` are the same for every target of the user (empty unless the task was
    built for a split)."""

    user_id: str
    item: Item
    target: Review
    history: tuple[tuple[Item, Review], ...]
    comparisons: tuple[Comparison, ...]
    user_history: tuple[tuple[Item, Review], ...] = ()
    user_comparisons: tuple[Comparison, ...] = ()
    neighbours: tuple[UserHistory, ...] = ()

    @property
    def reference(self) -> str:
        return self.target.text

    @property
    def key(self) -> SampleKey:
        return SampleKey(self.user_id, self.item.asin, self.target.timestamp)


def build_task(row: UserRow, data: ReviewData, num_retrieved: int, num_compared: int, m: int,
               split: str | None = None, neighbours: int = 0) -> ReviewTask:
    """Retrieve the history (BM25, `num_retrieved`) and the comparable items (`num_compared`, each with >= m others).
    With the `split` the row belongs to, also the user's reviews before all their targets in it, the latest
    `num_compared` of those comparable, and the `neighbours` users of the split most alike (their earlier reviews)."""
    item = data.items[row.data.asin]
    query = history_query(row.data, item)
    history = retrieve_history(row.profile, data.items, query, k=num_retrieved)
    compared = retrieve_history(comparable_items(row.profile, data, row.user_id, m), data.items, query,
                                k=num_compared) if num_compared > 0 else []
    earlier = data.earlier_reviews(split, row.user_id) if split is not None else ()
    latest = comparable_items(earlier, data, row.user_id, m)[::-1][:num_compared] if num_compared > 0 else []
    return ReviewTask(
        user_id=row.user_id,
        item=item,
        target=row.data,
        history=_with_items(data, history),
        comparisons=tuple(_comparison(data, row.user_id, review) for review in compared),
        user_history=_with_items(data, earlier),
        user_comparisons=tuple(_comparison(data, row.user_id, review) for review in latest),
        neighbours=tuple(UserHistory(other, _with_items(data, data.earlier_reviews(split, other)))
                         for other in data.similar_users(split, row.user_id, neighbours))
        if split is not None and neighbours else (),
    )


def _comparison(data: ReviewData, user_id: str, review: Review) -> Comparison:
    return Comparison(item=_item(data, review.asin), user_review=review,
                      others=tuple(data.item_reviews(review.asin, exclude_user=user_id)))


def _with_items(data: ReviewData, reviews: Sequence[Review]) -> tuple[tuple[Item, Review], ...]:
    return tuple((_item(data, review.asin), review) for review in reviews)


def _item(data: ReviewData, asin: str) -> Item:
    return data.items.get(asin) or Item(asin=asin, title="", description="")
