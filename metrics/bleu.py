"""Corpus BLEU as DPL computes it: Hugging Face evaluate's `sacrebleu` at its defaults (13a, exp smoothing,
mixed case), 0-100."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from .base import Metric


class BLEU(Metric):
    TOKENIZE = "13a"
    SMOOTH_METHOD = "exp"

    name = "bleu"
    scores = {"bleu": "BLEU"}
    # predictions' over references' length in BLEU's tokens: below 1, BLEU is scaled by exp(1 - 1/ratio)
    diagnostics = {"length_ratio": "length ratio"}
    scale = 100.0

    def __init__(self, tokenize: str = TOKENIZE, smooth_method: str = SMOOTH_METHOD):
        self.tokenize, self.smooth_method = tokenize, smooth_method

    @cached_property
    def _corpus(self):
        from sacrebleu.metrics import BLEU as SacreBLEU

        return SacreBLEU(tokenize=self.tokenize, smooth_method=self.smooth_method)

    @cached_property
    def _sentence(self):
        from sacrebleu.metrics import BLEU as SacreBLEU

        # as sacrebleu.sentence_bleu: effective order, so that a short text without 4-grams is not 0
        return SacreBLEU(tokenize=self.tokenize, smooth_method=self.smooth_method, effective_order=True)

    def corpus_score(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        result = self._corpus.corpus_score(list(predictions), [list(references)])
        return {"bleu": float(result.score), "length_ratio": result.sys_len / max(result.ref_len, 1)}

    def sentence_score(self, prediction: str, reference: str) -> dict[str, float]:
        return {"bleu": float(self._sentence.sentence_score(prediction, [reference]).score)}

    def statistics(self, predictions: Sequence[str], references: Sequence[str]) -> list[list[float]]:
        """sacrebleu's sufficient statistics (lengths, n-gram matches and totals), as its paired bootstrap uses."""
        return self._corpus._extract_corpus_statistics(list(predictions), [list(references)])

    def from_statistics(self, totals: Sequence[float]) -> dict[str, float]:
        return {"bleu": float(self._corpus._compute_score_from_stats(list(totals)).score)}

    def signature(self) -> str:
        return str(self._corpus.get_signature())
