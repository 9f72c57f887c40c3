"""What every metric is: a class with its settings as constants, a signature built from them, and a scorer of
a corpus and of one pair (the optimizers' per-example metric)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib import metadata
from typing import ClassVar


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


class Metric(ABC):
    """`name` keys the signature; `scores` maps each value the metric reports to its label in tables, in the
    order tables show them; `diagnostics` are values reported beside the scores but never ranked."""

    name: ClassVar[str]
    scores: ClassVar[dict[str, str]]
    diagnostics: ClassVar[dict[str, str]] = {}
    scale: ClassVar[float] = 1.0  # the scores' maximum: 100 for BLEU, 1 for the others

    @abstractmethod
    def corpus_score(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        """Every value of `scores` and `diagnostics` over the corpus (one reference per prediction)."""

    @abstractmethod
    def sentence_score(self, prediction: str, reference: str) -> dict[str, float]:
        """The `scores` of one pair, on the metric's own scale."""

    def statistics(self, predictions: Sequence[str], references: Sequence[str]) -> list[list[float]]:
        """Per pair, numbers whose sum over any subset of pairs gives that subset's scores (`from_statistics`):
        what a bootstrap resamples. By default each pair's `sentence_score`, averaged."""
        keys = list(self.scores)
        return [[self.sentence_score(p, r)[key] for key in keys] + [1.0] for p, r in zip(predictions, references)]

    def from_statistics(self, totals: Sequence[float]) -> dict[str, float]:
        """The `scores` of a set of pairs from the sum of their `statistics`."""
        *sums, n = totals
        return {key: value / max(n, 1.0) for key, value in zip(self.scores, sums)}

    @abstractmethod
    def signature(self) -> str:
        """The settings that produced a score, to print beside it."""
