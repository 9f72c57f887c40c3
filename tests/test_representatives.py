"""Step 0: representative selection (K-means / random) and the default embedder."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from drpkit.assets.models import embedder_path
from drpkit.data import Embedder, Review, ReviewData, UserRow, select_representatives

TOPICS = ("guitar", "piano", "drums", "violin", "banjo")


class FakeEmbedder:
    """One axis per topic word, plus a small text-dependent jitter; counts encoded texts."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = []
        for text in texts:
            vec = np.array([float(word in text) for word in TOPICS])
            rng = np.random.default_rng(int(hashlib.sha1(text.encode()).hexdigest()[:8], 16))
            vec = vec + rng.normal(scale=0.02, size=vec.shape)
            out.append(vec / np.linalg.norm(vec))
        return np.stack(out)


def rv(text: str, asin: str = "I") -> Review:
    return Review(asin=asin, title="t", text=text, rating=4, timestamp=0)


def topical_others(per_topic: int = 3, topics=TOPICS[:4]) -> list[tuple[str, Review]]:
    return [(f"{topic}-{i}", rv(f"all about the {topic} number {i}")) for topic in topics for i in range(per_topic)]


def topic_of(pick: tuple[str, Review]) -> str:
    return pick[0].split("-")[0]


def test_kmeans_one_per_other_cluster() -> None:
    user = rv("I love the guitar here")
    picks = select_representatives(user, topical_others(), m=3, embedder=FakeEmbedder())
    assert len(picks) == 3
    assert sorted(topic_of(p) for p in picks) == ["drums", "piano", "violin"]  # never the user's cluster


def test_kmeans_deterministic_under_seed() -> None:
    user = rv("guitar and piano")
    others = topical_others(per_topic=4, topics=TOPICS)
    runs = [select_representatives(user, others, m=4, seed=7, embedder=FakeEmbedder()) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert len(runs[0]) == 4


def test_distinct_users_and_never_the_user() -> None:
    user = rv("guitar")
    others = [("me", rv("drums by me"))] + topical_others()
    others += [("piano-0", rv("a second piano review by the same user"))]
    for method in ("kmeans", "random"):
        for seed in range(5):
            picks = select_representatives(user, others, m=4, method=method, seed=seed, embedder=FakeEmbedder(), user_id="me")
            ids = [uid for uid, _ in picks]
            assert len(ids) == 4 and len(set(ids)) == 4
            assert "me" not in ids
    # the duplicate user's later entry is never used
    assert all(
        r.text != "a second piano review by the same user"
        for uid, r in select_representatives(user, others, m=12, method="random", user_id="me")
    )


def test_exactly_m_when_clusters_collapse() -> None:
    # identical texts: K-means finds one distinct cluster; the fill still returns m
    user = rv("same words")
    others = [(f"u{i}", rv("same words")) for i in range(6)]
    picks = select_representatives(user, others, m=4, embedder=FakeEmbedder())
    assert len(picks) == 4 and len({uid for uid, _ in picks}) == 4
    # exactly len(others) == m works too
    assert len(select_representatives(user, others[:4], m=4, embedder=FakeEmbedder())) == 4


def test_m_too_large_and_bad_arguments() -> None:
    user = rv("guitar")
    others = topical_others(per_topic=1)
    with pytest.raises(ValueError, match="at least m=5"):
        select_representatives(user, others, m=5, embedder=FakeEmbedder())
    with pytest.raises(ValueError):
        select_representatives(user, others, m=5, method="random")
    with pytest.raises(ValueError):  # removing the user leaves too few
        select_representatives(user, others, m=4, user_id="piano-0", embedder=FakeEmbedder())
    with pytest.raises(ValueError):
        select_representatives(user, others, m=0, embedder=FakeEmbedder())
    with pytest.raises(ValueError, match="method"):
        select_representatives(user, others, m=2, method="nearest", embedder=FakeEmbedder())  # type: ignore[arg-type]


def test_random_method() -> None:
    user = rv("guitar")
    others = topical_others()
    picks = select_representatives(user, others, m=4, method="random", seed=3)
    assert picks == random.Random(3).sample(others, 4)
    assert picks == select_representatives(user, others, m=4, method="random", seed=3)
    assert picks != select_representatives(user, others, m=4, method="random", seed=4)


def test_representatives_come_from_the_item_index() -> None:
    def row(uid: str, text: str) -> UserRow:
        return UserRow(user_id=uid, profile=[rv(text, asin="I")], data=rv("target " + text, asin="T"))

    rows = [row("me", "guitar solo")] + [row(uid, f"all about {uid.split('-')[0]}") for uid, _ in topical_others()]
    data = ReviewData(rows={"val": rows}, items={})
    others = data.item_reviews("I", exclude_user="me")  # what a task's comparison holds
    picks = select_representatives(rows[0].profile[0], others, m=3, embedder=FakeEmbedder())
    assert len(picks) == 3 and "me" not in {uid for uid, _ in picks}
    assert sorted(topic_of(p) for p in picks) == ["drums", "piano", "violin"]


# ------------------------------------------------------------------ the real default embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(device="cpu")


def test_default_embedder_normalized_and_cached(embedder: Embedder) -> None:
    assert (embedder_path() / "modules.json").is_file()
    vectors = embedder.encode(["a quiet piano record", "loud guitars", "a quiet piano record"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2])

    def boom(*args, **kwargs):
        raise AssertionError("cached texts must not be re-encoded")

    original = embedder.model.encode
    embedder.model.encode = boom
    try:
        again = embedder.encode(["loud guitars", "a quiet piano record"])
    finally:
        embedder.model.encode = original
    assert np.array_equal(again, vectors[[1, 0]])


def test_default_embedder_picks_separate_clusters(embedder: Embedder) -> None:
    user = rv("The saxophone solos on this jazz album are smooth and the trumpet swings beautifully.")
    jazz = [
        "Wonderful jazz record, the saxophone and piano trio interplay is superb.",
        "Great bebop jazz with a swinging trumpet and a walking bass line.",
        "Smooth jazz saxophone throughout, perfect late night listening.",
        "The jazz drummer and sax player improvise brilliantly on every track.",
    ]
    shipping = [
        "The package arrived late and the box was crushed during delivery.",
        "Shipping took three weeks and the case came cracked in the mail.",
        "Seller sent the wrong item, had to return it for a refund.",
        "Delivery was slow and the parcel was damaged by the courier.",
    ]
    gift = [
        "I bought this as a birthday present for my grandmother and she cried with joy.",
        "My daughter got this as a Christmas gift and she loved it.",
        "Gave it to my dad for Father's Day, he was thrilled with the present.",
        "A lovely gift for my wife on our anniversary, she adores it.",
    ]
    others = [(f"jazz-{i}", rv(t)) for i, t in enumerate(jazz)]
    others += [(f"ship-{i}", rv(t)) for i, t in enumerate(shipping)]
    others += [(f"gift-{i}", rv(t)) for i, t in enumerate(gift)]
    for seed in (0, 1):
        picks = select_representatives(user, others, m=2, seed=seed, embedder=embedder)
        assert sorted(topic_of(p) for p in picks) == ["gift", "ship"]
        assert picks == select_representatives(user, others, m=2, seed=seed, embedder=embedder)
