"""The paper's metrics, computed as DPL's evaluation does (Hugging Face `evaluate` at its defaults) without
`evaluate`, which fetches its metric scripts from a hub: corpus BLEU (sacrebleu, 0-100), METEOR (nltk, 0-1),
ROUGE-1 and ROUGE-L (rouge-score, 0-1). Each metric is a class (`base.Metric`); a new one is a class added to
`METRICS`, and tables, reports and optimizers pick it up from there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .base import Metric
from .bleu import BLEU
from .meteor import METEOR
from .paired import Difference, PairedBootstrap
from .rouge import ROUGE

METRICS: tuple[Metric, ...] = (BLEU(), METEOR(), ROUGE())
SCORES: dict[str, str] = {key: label for metric in METRICS for key, label in metric.scores.items()}
DIAGNOSTICS: dict[str, str] = {key: label for metric in METRICS for key, label in metric.diagnostics.items()}
SCALES: dict[str, float] = {key: metric.scale for metric in METRICS for key in metric.scores}


@dataclass(frozen=True)
class Scores:
    """Corpus scores of `n` pairs, `missing` of them without a prediction (scored as empty), with every
    metric's signature."""

    values: dict[str, float]
    n: int
    signatures: dict[str, str] = field(default_factory=dict)
    missing: int = 0

    def __getattr__(self, key: str) -> float:
        """`scores.bleu`: a metric's value by its key."""
        try:
            return self.__dict__["values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def as_dict(self) -> dict:
        return {**self.values, "n": self.n, "missing": self.missing, "signatures": dict(self.signatures)}


def score(predictions: Sequence[str], references: Sequence[str], *, missing: int = 0) -> Scores:
    """Every metric of `METRICS` over the pairs; `missing` (failed samples) is carried into the result."""
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; "
                         "they must pair up one to one")
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    for name, texts in (("predictions", predictions), ("references", references)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] is {type(text).__name__}, expected str")
    values = {key: value for metric in METRICS for key, value in metric.corpus_score(predictions, references).items()}
    return Scores(values, len(predictions), {metric.name: metric.signature() for metric in METRICS}, missing)


__all__ = ["BLEU", "DIAGNOSTICS", "Difference", "METEOR", "METRICS", "Metric", "PairedBootstrap", "ROUGE", "SCALES", "SCORES", "Scores", "score"]
