"""The DRP program: representatives, Extract, Validate, Summarize, Generate."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import dspy

from drpkit.data.representatives import Embedder
from drpkit.data.schema import Review
from drpkit.data.tasks import Comparison, ReviewTask
from drpkit.signatures import DifferenceFeature

from .calls import StageFailure, Usage
from .formatting import format_contrasts, format_differences, format_history
from .representatives import SelectRepresentatives
from .stages import STAGES, Extract, Generate, Summarize, Validate


@dataclass(frozen=True)
class DRPConfig:
    """The method's knobs; the ablations of the paper are settings of these, not other programs."""

    m: int = 4
    selection: Literal["kmeans", "random"] = "kmeans"
    dimensions: Literal["discovered", "fixed"] = "discovered"
    validate: bool = True
    summarize: bool = True
    seed: int = 0
    attempts: int = 4  # the small CPU models refuse or echo now and then; a hotter retry usually works
    contrast: bool = False  # CICL: Generate reads the user's vs the representatives' reviews, no differences
    length_hint: bool = False  # beyond the paper: Generate is told the median length of the past reviews shown

    def __post_init__(self) -> None:
        if self.contrast and (self.validate or self.summarize):
            raise ValueError("contrast examples go straight to Generate: set validate=False and summarize=False")


class DRP(dspy.Module):
    """Difference-aware Reasoning Personalization for review generation.

    `forward` returns the review (None when Summarize or Generate gave no usable answer) with every
    intermediate: representatives, differences before and after validation, summary, failures, usage."""

    def __init__(self, config: DRPConfig = DRPConfig(), embedder: Embedder | None = None):
        super().__init__()
        self.config = config
        self.representatives = SelectRepresentatives(config.m, config.selection, config.seed, embedder)
        self.extract = Extract(config.dimensions, config.attempts)
        self.validate = Validate(config.attempts)
        self.summarize = Summarize(config.attempts)
        self.generate = Generate(config.contrast, config.attempts, config.length_hint)

    def set_stage_lms(self, lms: Mapping[str, dspy.LM]) -> None:
        """Attach one LM per stage (keys: extract, validate, summarize, generate)."""
        for stage in STAGES:
            getattr(self, stage).set_lm(lms[stage])

    def forward(self, task: ReviewTask) -> dspy.Prediction:
        usage, failures, comparisons, per_item = Usage(), [], [], []
        past_reviews = format_history(task.history)

        for comparison in task.comparisons:
            representatives = self.representatives(comparison)  # Step 0
            others = [review for _, review in representatives]
            found, kept = [], []
            if not self.config.contrast:  # Steps 1 and 2
                found, kept = self.find_differences(comparison, others, usage, failures)
            comparisons.append({
                "asin": comparison.item.asin,
                "representatives": [user_id for user_id, _ in representatives],
                "differences": [f.model_dump() for f in found],
                "validated": [f.model_dump() for f in kept],
            })
            per_item.append((comparison, others, kept))

        if not task.comparisons:
            evidence = "(none)"
        elif self.config.contrast:  # CICL: the reviews themselves, the user's against the others'
            evidence = format_contrasts((c.item, c.user_review, others) for c, others, _ in per_item)
        else:
            evidence = format_differences((c.item, kept) for c, _, kept in per_item)
        summary = review = None
        try:
            summary = self.summarize(past_reviews, evidence, usage=usage) if self.config.summarize else evidence  # Step 3a
            review = self.generate(  # Step 3b
                task.item, past_reviews, summary, task.target.rating, task.target.title, usage=usage,
                sources=[review.text for _, review in task.history] + [summary, task.item.description],
                length=typical_length(task) if self.config.length_hint else None,
            )
        except StageFailure as failure:  # no review: the sample fails, with everything it produced kept
            failures.append(failure.record())
        return dspy.Prediction(
            review=review, summary=summary, comparisons=comparisons, failures=failures,
            usage=usage.stages, retries=usage.retries, config=asdict(self.config),
        )

    def find_differences(self, comparison: Comparison, others: list[Review], usage: Usage,
                         failures: list[dict]) -> tuple[list[DifferenceFeature], list[DifferenceFeature]]:
        """Steps 1 and 2 for one compared item: the features found and those kept. A failure is recorded
        and the sample goes on without this item's differences."""
        found: list[DifferenceFeature] = []
        try:
            found = self.extract(comparison.item, comparison.user_review, others, usage=usage)  # Step 1
            if self.config.validate and found:
                return found, self.validate(comparison.item, comparison.user_review, others, found, usage=usage)  # Step 2
            return found, found
        except StageFailure as failure:
            failures.append(failure.record() | {"asin": comparison.item.asin})
            return found, []


def typical_length(task: ReviewTask) -> str:
    """The median word count of the past reviews in the prompt, as Generate's length hint (`Method.apply`
    refuses the hint where no past review is shown)."""
    counts = [len(review.text.split()) for _, review in task.history]
    return f"about {statistics.median_low(counts)} words (the median of the {len(counts)} past reviews shown)"
