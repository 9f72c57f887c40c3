"""METEOR as evaluate's `meteor` computes it for nltk >= 3.6.5: the mean over pairs of nltk's
`single_meteor_score(word_tokenize(reference), word_tokenize(prediction))`, 0-1. `word_tokenize` splits
sentences with Punkt first (`preserve_line` False): skipping that changes the score."""

from __future__ import annotations

from collections.abc import Sequence

from ..assets.nltk import PUNKT_LANGUAGE, PUNKT_PACKAGE, ensure_nltk_data
from .base import Metric, version


class METEOR(Metric):
    ALPHA = 0.9
    BETA = 3
    GAMMA = 0.5

    name = "meteor"
    scores = {"meteor": "METEOR"}

    def __init__(self, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA):
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def _pair(self, prediction: str, reference: str) -> float:
        from nltk.tokenize import word_tokenize
        from nltk.translate.meteor_score import single_meteor_score

        return single_meteor_score(word_tokenize(reference), word_tokenize(prediction),
                                   alpha=self.alpha, beta=self.beta, gamma=self.gamma)

    def corpus_score(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        ensure_nltk_data()
        values = [self._pair(p, r) for p, r in zip(predictions, references)]
        return {"meteor": float(sum(values) / len(values))}

    def sentence_score(self, prediction: str, reference: str) -> dict[str, float]:
        ensure_nltk_data()
        return {"meteor": float(self._pair(prediction, reference))}

    def signature(self) -> str:
        return (f"meteor:nltk-{version('nltk')}|single_meteor_score|alpha:{self.alpha}|beta:{self.beta}"
                f"|gamma:{self.gamma}|tok:word_tokenize(punkt_tab:{PUNKT_LANGUAGE},"
                f"{PUNKT_PACKAGE}-{version(PUNKT_PACKAGE)})|wordnet:3.0|mean")
