"""BM25 retrieval over a user's history, as DPL does it (``utils/utils.py: get_selected_profile``).

DPL indexes, for every profile review, ``f"{review title} {item description}"`` and queries
with ``f"{target review title} {target item description}"``; both are tokenized with plain
``str.split()`` (case kept, punctuation kept) and scored with ``rank_bm25.BM25Okapi`` at its
default parameters. The same is done here. One deliberate deviation: DPL takes the top n with
``BM25Okapi.get_top_n`` (``np.argsort(scores)[::-1]``, so ties come out in an unspecified
order); here ties keep profile order, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rank_bm25 import BM25Okapi

from .loading import ReviewData
from .schema import Item, Review

__all__ = [
    "comparable_items",
    "history_document",
    "history_query",
    "rank_history",
    "retrieve_history",
    "tokenize",
]


def tokenize(text: str) -> list[str]:
    """DPL's tokenization: whitespace split, nothing else."""
    return text.split()


def history_document(review: Review, items: Mapping[str, Item]) -> str:
    """The text indexed for one profile review: its title + its item's description."""
    item = items.get(review.asin)
    description = item.description if item is not None else ""
    return f"{review.title} {description}"


def history_query(target: Review, item: Item | None) -> str:
    """The query for a target: the target review's title + the target item's description."""
    description = item.description if item is not None else ""
    return f"{target.title} {description}"


def rank_history(profile: Sequence[Review], items: Mapping[str, Item], query: str) -> list[tuple[int, float]]:
    """``(profile index, BM25 score)`` for every profile review, best first, ties by index."""
    if not profile:
        return []
    corpus = [tokenize(history_document(review, items)) for review in profile]
    tokens = tokenize(query)
    if not tokens or not any(corpus):
        # Nothing to score (BM25Okapi would divide by a zero average length): keep order.
        return [(i, 0.0) for i in range(len(profile))]
    scores = BM25Okapi(corpus).get_scores(tokens)
    order = sorted(range(len(profile)), key=lambda i: (-float(scores[i]), i))
    return [(i, float(scores[i])) for i in order]


def retrieve_history(
    profile: Sequence[Review],
    items: Mapping[str, Item],
    query: str,
    k: int,
) -> list[Review]:
    """The ``k`` profile reviews BM25 ranks highest for ``query`` (all of them, ranked, when
    ``k >= len(profile)``). Profile items missing from ``items`` count as having no description.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return [profile[i] for i, _ in rank_history(profile, items, query)[:k]]


def comparable_items(
    profile: Sequence[Review],
    data: ReviewData,
    user_id: str,
    m: int = 4,
) -> list[Review]:
    """Profile reviews whose item at least ``m`` *other* loaded users reviewed (profile order).

    DPL's ``diff_profile``: ``len(asin_reviewers_map[asin] - {user_id}) >= 4``, where the
    reviewers come from the users' profiles (see :meth:`ReviewData.item_reviews`).
    """
    return [review for review in profile if data.reviewer_count(review.asin, exclude_user=user_id) >= m]
