"""Paired bootstrap resampling (Koehn 2004, as sacrebleu's `--paired-bs`): is system B better than baseline A on
the same samples? Both are scored on the same resamples of the pairs; the 95% interval of B - A over the
resamples says whether the gap is more than the luck of which samples were drawn. BLEU resamples sacrebleu's
sufficient statistics (a corpus score, not a mean of sentence scores); METEOR and ROUGE resample each pair's
score (for the toolkit's runs, one pair is one user)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import Metric


@dataclass(frozen=True)
class Difference:
    """System minus baseline on one score: the difference on all pairs and its bootstrap interval."""

    delta: float
    low: float
    high: float
    p_value: float  # two-sided: how often the resampled difference falls on the other side of zero

    @property
    def significant(self) -> bool:
        """The interval leaves out zero."""
        return self.low > 0 or self.high < 0


class PairedBootstrap:
    N_SAMPLES = 1000  # sacrebleu's default for --paired-bs
    CONFIDENCE = 0.95
    SEED = 12345  # sacrebleu's default SACREBLEU_SEED

    def __init__(self, metrics: Sequence[Metric] | None = None, n_samples: int = N_SAMPLES,
                 confidence: float = CONFIDENCE, seed: int = SEED):
        from . import METRICS

        self.metrics = tuple(METRICS if metrics is None else metrics)
        self.n_samples, self.confidence, self.seed = n_samples, confidence, seed

    def compare(self, baseline: Sequence[str], system: Sequence[str],
                references: Sequence[str]) -> dict[str, Difference]:
        """Every score's `Difference` of `system` over `baseline`, both paired with `references` one to one."""
        import numpy as np

        if not len(baseline) == len(system) == len(references):
            raise ValueError(f"paired comparison needs as many predictions as references: {len(baseline)} "
                             f"baseline, {len(system)} system, {len(references)} references")
        if not references:
            raise ValueError("nothing to compare: no pairs")
        rng = np.random.default_rng(self.seed)
        draws = rng.integers(0, len(references), size=(self.n_samples, len(references)))
        tail = (1 - self.confidence) / 2
        out: dict[str, Difference] = {}
        for metric in self.metrics:
            stats = [np.asarray(metric.statistics(texts, references), dtype=np.float64)
                     for texts in (baseline, system)]
            full = [metric.from_statistics(s.sum(axis=0)) for s in stats]
            resampled = [[metric.from_statistics(s[draw].sum(axis=0)) for draw in draws] for s in stats]
            for key in metric.scores:
                deltas = np.array([b[key] - a[key] for a, b in zip(*resampled)])
                delta = full[1][key] - full[0][key]
                low, high = np.quantile(deltas, [tail, 1 - tail])
                other_side = np.mean(deltas <= 0) if delta > 0 else np.mean(deltas >= 0)
                out[key] = Difference(float(delta), float(low), float(high), float(min(1.0, 2 * other_side)))
        return out

    def signature(self) -> str:
        return (f"paired-bootstrap|n_samples:{self.n_samples}|confidence:{self.confidence}|seed:{self.seed}"
                f"|bleu:sufficient-statistics|others:per-pair")
