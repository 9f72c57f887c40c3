"""Step 0: pick M representative other reviewers of an item, from clusters other than the user's."""

from __future__ import annotations

from typing import Literal

from ..data.representatives import Embedder, select_representatives
from ..data.schema import Review
from ..data.tasks import Comparison


class SelectRepresentatives:
    """K-means over sentence embeddings (or `random`, for ablation); no LM involved."""

    def __init__(self, m: int = 4, method: Literal["kmeans", "random"] = "kmeans", seed: int = 0,
                 embedder: Embedder | None = None):
        self.m, self.method, self.seed = m, method, seed
        self.embedder = embedder or (Embedder() if method == "kmeans" else None)

    def __deepcopy__(self, memo: dict) -> SelectRepresentatives:
        """No parameters to copy: optimizers' copies of the program share Step 0 and its embedder."""
        return self

    def __call__(self, comparison: Comparison) -> list[tuple[str, Review]]:
        return select_representatives(
            comparison.user_review, list(comparison.others), m=self.m, method=self.method,
            seed=self.seed, embedder=self.embedder,
        )
