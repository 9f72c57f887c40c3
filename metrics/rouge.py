"""ROUGE-1 and ROUGE-L as evaluate's `rouge` computes them at its defaults: rouge-score F-measure, no stemmer,
the default tokenizer, aggregated by a `BootstrapAggregator` (1000 resamples, 95% interval) whose `mid`
is reported, 0-1. DPL seeds NumPy's global RNG with 42 (`transformers.set_seed`), and evaluate's aggregator
resamples rouge1, rouge2, rougeL, rougeLsum in that order; the draws depend only on the number of pairs, so
resampling placeholders for the types not reported reproduces DPL's numbers exactly. The caller's global
NumPy RNG state is restored afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from .base import Metric, version


class ROUGE(Metric):
    TYPES = ("rouge1", "rougeL")
    USE_STEMMER = False
    BOOTSTRAP_SAMPLES = 1000  # rouge_score.scoring.BootstrapAggregator's default
    CONFIDENCE_INTERVAL = 0.95  # idem
    SEED = 42  # DPL: transformers.set_seed(42)
    EVALUATE_ORDER = ("rouge1", "rouge2", "rougeL", "rougeLsum")  # the types evaluate scores, resampled in order

    name = "rouge"
    scores = {"rouge1": "ROUGE-1", "rougeL": "ROUGE-L"}

    def __init__(self, use_stemmer: bool = USE_STEMMER, bootstrap_samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = SEED):
        self.use_stemmer, self.bootstrap_samples, self.seed = use_stemmer, bootstrap_samples, seed

    @cached_property
    def _scorer(self):
        from rouge_score import rouge_scorer

        return rouge_scorer.RougeScorer(list(self.TYPES), use_stemmer=self.use_stemmer)

    def sentence_score(self, prediction: str, reference: str) -> dict[str, float]:
        pair = self._scorer.score(reference, prediction)  # (target, prediction), as evaluate calls it
        return {kind: float(pair[kind].fmeasure) for kind in self.TYPES}

    def corpus_score(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        import numpy as np
        from rouge_score import scoring

        aggregator = scoring.BootstrapAggregator(confidence_interval=self.CONFIDENCE_INTERVAL,
                                                 n_samples=self.bootstrap_samples)
        placeholder = scoring.Score(precision=0.0, recall=0.0, fmeasure=0.0)
        last = max(self.EVALUATE_ORDER.index(kind) for kind in self.TYPES)
        for prediction, reference in zip(predictions, references):
            pair = self._scorer.score(reference, prediction)
            aggregator.add_scores({kind: pair.get(kind, placeholder) for kind in self.EVALUATE_ORDER[:last + 1]})
        state = np.random.get_state()
        try:
            np.random.seed(self.seed)
            aggregated = aggregator.aggregate()
        finally:
            np.random.set_state(state)
        return {kind: float(aggregated[kind].mid.fmeasure) for kind in self.TYPES}

    def signature(self) -> str:
        order = ">".join(self.EVALUATE_ORDER[:self.EVALUATE_ORDER.index(self.TYPES[-1]) + 1])
        return (f"rouge-score-{version('rouge-score')}|{'+'.join(self.TYPES)}|use_stemmer:{self.use_stemmer}"
                f"|tok:default|agg:bootstrap-mid(n_samples:{self.bootstrap_samples},seed:{self.seed},"
                f"order:{order})|F")
