"""drpkit.data: DPL-schema loading and validation, BM25 history retrieval, Step 0 representatives.

Heavy libraries (datasets, sentence-transformers, scikit-learn) are imported only when used.
"""

from pathlib import Path

from .loading import DEFAULT_SPLITS, HUB_CATEGORIES, ReviewData, RowProblem, convert_meta, convert_rows, load_reviews
from .representatives import Embedder, select_representatives
from .retrieval import comparable_items, history_document, history_query, rank_history, retrieve_history
from .schema import Item, Review, UserRow

SAMPLE_DIR = Path(__file__).parent / "sample"
"""The sample dataset written for the project (DPL schema, 14 users, 18 albums)."""

__all__ = [
    "SAMPLE_DIR",
    "DEFAULT_SPLITS",
    "HUB_CATEGORIES",
    "Embedder",
    "Item",
    "Review",
    "ReviewData",
    "RowProblem",
    "UserRow",
    "comparable_items",
    "convert_meta",
    "convert_rows",
    "history_document",
    "history_query",
    "load_reviews",
    "rank_history",
    "retrieve_history",
    "select_representatives",
]
