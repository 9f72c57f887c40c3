"""The DRP program: representatives, Extract, Validate, Summarize, Generate."""

from __future__ import annotations

import contextvars
import hashlib
import json
import statistics
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Literal

import dspy

from ..data.representatives import Embedder
from ..data.schema import Review
from ..data.tasks import Comparison, ReviewTask
from ..signatures import DifferenceFeature
from .calls import StageFailure
from .formatting import format_contrasts, format_differences, format_history
from .representatives import SelectRepresentatives
from .stages import Extract, Generate, Stage, Summarize, Validate
from .style import Style, describe_style
from .usage import Usage

STAGES: tuple[str, ...] = tuple(stage.name for stage in (Extract, Validate, Summarize, Generate))
"""The program's LM stages in pipeline order: the keys of per-stage LMs, usage and optimization."""


@dataclass(frozen=True)
class DRPConfig:
    """The method's knobs; the ablations of the paper are settings of these, not other programs. Each field's
    `help` is its documentation in the command line and the grid files, which are derived from these fields."""

    m: int = field(default=4, metadata={"help": "representative reviewers per compared item"})
    selection: Literal["kmeans", "random"] = field(
        default="kmeans", metadata={"help": "Step 0: K-means over review embeddings, or random (ablation)"})
    dimensions: Literal["discovered", "fixed"] = field(
        default="discovered", metadata={"help": "Step 1: dimensions the LM finds, or DPL's three fixed ones"})
    validate: bool = field(default=True, metadata={"help": "Step 2 (off: the ablation without it)"})
    summarize: bool = field(
        default=True, metadata={"help": "Step 3a (off: the differences go straight to Generate)"})
    seed: int = field(default=0, metadata={"help": "seed of Step 0"})
    # the small CPU models refuse or echo now and then; a hotter retry usually works
    attempts: int = field(default=4, metadata={"help": "tries per stage call before it is a failure"})
    contrast: bool = field(default=False, metadata={
        "help": "CICL: Generate reads the user's against the representatives' reviews, no differences",
        "method_only": True})
    length_hint: bool = field(default=False, metadata={
        "help": "beyond the paper: tell Generate the median length of the past reviews it is shown"})
    style_hint: bool = field(default=False, metadata={
        "help": "beyond the paper: tell Generate the user's style measured in code (review and sentence length, "
                "exclamation, first-person and capitals habits), lengths against the representatives' reviews "
                "where the method compares"})
    length_floor: float = field(default=0.0, metadata={
        "help": "beyond the paper: Generate's review may not end before this share of the median length of the past "
                "reviews it is shown, e.g. 1.0 (vLLM's min_tokens; other servers may refuse it; 0: off)"})
    past_reviews: Literal["block", "demos"] = field(default="block", metadata={
        "help": "how Generate sees the past reviews: one text block (the paper), or beyond the paper as earlier "
                "chat turns, each item answered with the user's own review (few-shot demos)"})

    def __post_init__(self) -> None:
        if self.contrast and (self.validate or self.summarize):
            raise ValueError("contrast examples go straight to Generate: set validate=False and summarize=False")


@dataclass
class ComparedItem:
    """One compared item through Steps 0 to 2: its representatives, the features found and kept, their cost."""

    comparison: Comparison
    representatives: list[tuple[str, Review]]
    found: list[DifferenceFeature] = field(default_factory=list)
    kept: list[DifferenceFeature] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    failures: list[dict] = field(default_factory=list)

    @property
    def others(self) -> list[Review]:
        return [review for _, review in self.representatives]

    def record(self) -> dict:
        return {
            "asin": self.comparison.item.asin,
            "representatives": [user_id for user_id, _ in self.representatives],
            "differences": [f.model_dump() for f in self.found],
            "validated": [f.model_dump() for f in self.kept],
        }


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
        self.generate = Generate(config.contrast, config.attempts, config.length_hint, config.past_reviews,
                                 config.style_hint)

    def stages(self) -> dict[str, Stage]:
        """The stage modules by name, in pipeline order."""
        return {name: getattr(self, name) for name in STAGES}

    def fingerprint(self, adapter: dspy.Adapter | None = None) -> str:
        """A hash of the program's prompts: each stage's signature (instructions, fields) and demos, the defaults or
        an optimizer's, and with `adapter` the messages it makes of them (placeholder inputs); not its LMs (nor
        what an optimizer attaches to the program, e.g. its trial logs). Runs record it, so that a folder made
        with other prompts (an older version, another compiled state, another adapter) is not resumed as if it
        were this program's."""
        state = {}
        for name, stage in self.stages().items():
            for predictor_name, predictor in stage.named_predictors():
                dump = predictor.dump_state()
                state[f"{name}.{predictor_name}"] = {"signature": dump["signature"], "demos": dump["demos"]}
                if adapter is not None:
                    signature = predictor.signature
                    placeholders = {field: f"{{{field}}}" for field in signature.input_fields}
                    state[f"{name}.{predictor_name}"]["messages"] = adapter.format(signature, [], placeholders)
        return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def set_stage_lms(self, lms: Mapping[str, dspy.LM]) -> None:
        """Attach one LM per stage (keys: `STAGES`)."""
        for name, stage in self.stages().items():
            stage.set_lm(lms[name])

    def forward(self, task: ReviewTask) -> dspy.Prediction:
        usage, failures = Usage(), []
        past_reviews = format_history(task.history)
        compared = self.compare(task.comparisons)  # Steps 0 to 2, for every compared item at once
        for item in compared:
            usage.merge(item.usage)
            failures.extend(item.failures)

        if not compared:
            evidence = None
        elif self.config.contrast:  # CICL: the reviews themselves, the user's against the others'
            evidence = format_contrasts((c.comparison.item, c.comparison.user_review, c.others) for c in compared)
        else:
            evidence = format_differences((c.comparison.item, c.kept) for c in compared)
        summary = review = None
        try:
            summary = (self.summarize(past_reviews, evidence or "(none)", usage=usage)  # Step 3a
                       if self.config.summarize else evidence)
            review = self.generate(  # Step 3b
                task.item, task.history, summary, task.target.rating, task.target.title, usage=usage,
                sources=[review.text for _, review in task.history]
                + [text for text in (summary, task.item.description) if text],
                length=typical_length(task) if self.config.length_hint else None, budget=review_budget(task),
                style=measured_style(task, compared) if self.config.style_hint else None,
                min_tokens=review_floor(task, self.config.length_floor) if self.config.length_floor else None,
            )
        except StageFailure as failure:  # no review: the sample fails, with everything it produced kept
            failures.append(failure.record())
        return dspy.Prediction(
            review=review, summary=summary, comparisons=[item.record() for item in compared], failures=failures,
            usage=usage.stages, retries=usage.retries, config=asdict(self.config),
        )

    def compare(self, comparisons: list[Comparison]) -> list[ComparedItem]:
        """Steps 0 to 2 for each compared item, the items in parallel threads (each with the caller's DSPy
        context): a sample's LM calls reach the server together and are decoded in one batch, whose steps read
        the weights once for all (on the CPU here: 3.8 tokens/s for one stream, 13.6 for eight)."""
        if len(comparisons) < 2:
            return [self.compare_one(comparison) for comparison in comparisons]
        with ThreadPoolExecutor(max_workers=len(comparisons)) as pool:  # a context copied here, per item
            futures = [pool.submit(contextvars.copy_context().run, self.compare_one, c) for c in comparisons]
            return [future.result() for future in futures]

    def compare_one(self, comparison: Comparison) -> ComparedItem:
        item = ComparedItem(comparison, self.representatives(comparison))  # Step 0
        if not self.config.contrast:  # Steps 1 and 2
            self.find_differences(item)
        return item

    def find_differences(self, item: ComparedItem) -> None:
        """Steps 1 and 2 for one compared item: the features found and those kept. A failure is recorded
        and the sample goes on without this item's differences."""
        comparison = item.comparison
        try:
            item.found = self.extract(comparison.item, comparison.user_review, item.others, usage=item.usage)  # Step 1
            item.kept = item.found
            if self.config.validate and item.found:  # Step 2
                item.kept = self.validate(comparison.item, comparison.user_review, item.others, item.found,
                                          usage=item.usage)
        except StageFailure as failure:
            item.failures.append(failure.record() | {"asin": comparison.item.asin})
            item.kept = []


TOKENS_PER_WORD = 1.4  # review text in the tokenizers of small instruct models, rounded up
MIN_REVIEW_BUDGET = 128


def review_budget(task: ReviewTask) -> int | None:
    """Generate's answer budget in tokens: twice the longest past review shown, with room for the answer's
    format; None without past reviews. From the user's history only, never from the target."""
    counts = [len(review.text.split()) for _, review in task.history]
    return max(MIN_REVIEW_BUDGET, round(2 * TOKENS_PER_WORD * max(counts)) + 32) if counts else None


def review_floor(task: ReviewTask, share: float) -> int | None:
    """Generate's shortest answer in tokens: `share` of the median past review shown (a 1.5B model, asked for a
    user's review, writes a quarter of their length whatever it is told); None without past reviews. From the
    user's history only, never from the target."""
    counts = [len(review.text.split()) for _, review in task.history]
    return round(share * TOKENS_PER_WORD * statistics.median(counts)) if counts else None


def measured_style(task: ReviewTask, compared: list[ComparedItem]) -> str:
    """The user's style from every review of theirs the sample holds (history and compared items), against the
    representatives' reviews of the compared items if there are any; never from the target."""
    own = [review.text for _, review in task.history] + [c.comparison.user_review.text for c in compared]
    user = Style.measure(own)
    if user is None:
        return "(no past reviews to measure)"
    return describe_style(user, Style.measure([review.text for c in compared for review in c.others]))


def typical_length(task: ReviewTask) -> str:
    """The median word count of the past reviews in the prompt, as Generate's length hint (`Method.apply`
    refuses the hint where no past review is shown)."""
    counts = [len(review.text.split()) for _, review in task.history]
    return f"about {statistics.median_low(counts)} words (the median of the {len(counts)} past reviews shown)"
