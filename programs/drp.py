"""The DRP program: representatives, Extract, Validate, Summarize, Generate; and the stages other methods add
(POPI's Infer, LLM-TRSR's Recap, P-DB's Distill and Refine, RRP's Reason and CrossCheck) as its settings."""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import dspy
from rank_bm25 import BM25Okapi

from ..data.representatives import Embedder
from ..data.retrieval import history_query
from ..data.schema import Item, Review
from ..data.tasks import Comparison, ReviewTask
from ..signatures import DifferenceFeature
from .calls import StageFailure
from .formatting import (format_contrasts, format_differences, format_history, format_persona,
                         format_similar_personas)
from .representatives import SelectRepresentatives
from .stages import (CrossCheck, Dimensions, Distill, Extract, Generate, Infer, Reason, Recap, Refine, Stage, Summarize,
                     Validate, median_words)
from .style import Style, describe_style
from .usage import Usage
from .users import UserProfiles, Work, profile_key

STAGE_CLASSES: tuple[type[Stage], ...] = (Extract, Validate, Summarize, Infer, Recap, Distill, Refine, Generate, Reason,
                                          CrossCheck)
STAGES: tuple[str, ...] = tuple(stage.name for stage in STAGE_CLASSES)
"""Every LM stage in pipeline order: the keys of per-stage LMs, usage and optimization. A program has DRP's four
and those its settings add (`stage_names`)."""
DRP_STAGES = ("extract", "validate", "summarize", "generate")
"""The stages every program has (a method that does not call some of them still has their prompts)."""
REVIEW_STAGES = ("generate", "reason", "crosscheck")
"""The stages that write the review: their prompt tokens are the generator's context."""
USER_SUMMARY_STAGES = {"none": (), "popi": ("infer",), "llm-trsr": ("recap",), "p-db": ("distill", "refine")}


@dataclass(frozen=True)
class DRPConfig:
    """The method's knobs; the ablations of the paper are settings of these, not other programs. Each field's
    `help` is its documentation in the command line and the grid files, which are derived from these fields."""

    m: int = field(default=4, metadata={"help": "representative reviewers per compared item"})
    selection: Literal["kmeans", "random"] = field(
        default="kmeans", metadata={"help": "Step 0: K-means over review embeddings, or random (ablation)"})
    dimensions: Dimensions = field(default="discovered", metadata={
        "help": "Step 1: dimensions the LM finds in the user's style, found in what the user writes about as well "
                "(with-content; Validate then keeps such features), or DPL's three fixed ones"})
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
    end_bias: float = field(default=0.0, metadata={
        "help": "beyond the paper: added to the logit of the token that ends Generate's review, e.g. -4: the review "
                "ends later where ending is a close call, never forced on as with --length-floor (vLLM's logit_bias "
                "on the end token its /tokenize shows; the retries after a loop go without; 0: off)"})
    past_reviews: Literal["block", "demos", "document"] = field(default="block", metadata={
        "help": "how Generate sees the past reviews: one text block (the paper), or beyond the paper as earlier "
                "chat turns, each item answered with the user's own review (few-shot demos), or as the earlier "
                "entries of a document of the user's reviews that the model continues with the target's review "
                "(vLLM's continue_final_message; no chat turn to refuse or reply to)"})
    open_answer: bool = field(default=False, metadata={
        "help": "beyond the paper: Generate's review, asked in a chat turn, has its answer begun as a review page's "
                "entry (the rating, the review's title, then 'Review:'), which the model continues (vLLM's "
                "continue_final_message; not with --past-reviews document, which begins it already): the 1.5B model "
                "refuses critical reviews far less, but writes shorter ones"})
    profile_in_entry: bool = field(default=False, metadata={
        "help": "beyond the paper: with --past-reviews document, Generate's profile (the summary) is a line of the "
                "target's open entry, just above 'Review:', in place of a line under the document's heading (measured "
                "with the 1.5B model: shorter reviews, no gain over rag on held-out users; docs/measurements.md)"})
    review_candidates: int = field(default=1, metadata={
        "help": "beyond the paper: Generate writes this many reviews, the greedy one and the rest sampled at "
                "temperature 0.8 in requests of up to 3 (vLLM's n; a run with more candidates reuses the answers "
                "of one with fewer), and keeps, of those that pass the checks, the one --review-pick ranks first "
                "(1: the greedy one)"})
    review_pick: Literal["length", "similarity"] = field(default="length", metadata={
        "help": "beyond the paper: which of Generate's review candidates is kept, from the user's past reviews (those "
                "shown; popi without --popi-reviews: those its summary read): the one whose length is nearest their "
                "median (length), or the one most like them in words, ROUGE-1 F (similarity)"})
    repetition_penalty: float = field(default=1.0, metadata={
        "help": "beyond the paper: vLLM's repetition_penalty on Generate's review, e.g. 1.15 (above 1: a token of "
                "the prompt or of the review so far is less likely again, so loops end; 1: off)"})
    user_summary: Literal["none", "popi", "llm-trsr", "p-db"] = field(default="none", metadata={
        "help": "Generate's profile made once per user from their reviews before all their targets: POPI's "
                "preference summary, LLM-TRSR's recurrent summary, P-DB's persona", "method_only": True})
    popi_reviews: int = field(default=0, metadata={
        "help": "popi: the BM25-retrieved past reviews Generate also sees beside the preference summary, at most "
                "--num-retrieved (0: the summary alone, as POPI)"})
    user_reviews: int = field(default=8, metadata={
        "help": "popi, llm-trsr, p-db and --summary-scope user: the user's latest reviews (before all their "
                "targets) that a summary made once per user reads"})
    chunk_size: int = field(default=4, metadata={"help": "llm-trsr: reviews per step of the recurrent summary"})
    similar_users: int = field(default=2, metadata={
        "help": "p-db: the users of the split with most items in common whose personas refine the user's"})
    persona_facts: int = field(default=4, metadata={
        "help": "p-db: the persona's facts retrieved for the target (BM25, the target's query) beside its traits"})
    summary_scope: Literal["target", "user"] = field(default="target", metadata={
        "help": "Summarize (intsum, dpl, drp) per target from its retrieved reviews and compared items (the paper), "
                "or once per user from their latest reviews and compared items before all their targets, reused "
                "for each target"})
    rrp: bool = field(default=False, metadata={
        "help": "RRP: Generate reasons through a hierarchical template (the user's traits from the retrieved "
                "reviews, a plan for the item, the review), then cross-checks the draft with those reviews",
        "method_only": True})

    def __post_init__(self) -> None:
        if self.contrast and (self.validate or self.summarize):
            raise ValueError("contrast examples go straight to Generate: set validate=False and summarize=False")
        if self.user_summary != "none" and (self.summarize or self.contrast):
            raise ValueError(f"{self.user_summary}'s summary is Generate's profile: set summarize=False")
        if self.summary_scope == "user" and not self.summarize:
            raise ValueError("summary_scope 'user' is where Summarize runs: it needs summarize=True")
        if self.summary_scope == "user" and self.style_hint:
            raise ValueError("style_hint measures against the target's compared items: not with summary_scope 'user'")
        if self.review_candidates < 1:
            raise ValueError(f"review_candidates: at least 1 (the greedy review), got {self.review_candidates}")
        if self.review_pick != "length" and self.review_candidates == 1:
            raise ValueError(f"review_pick {self.review_pick!r} picks among candidates: set review_candidates above 1")
        extras = [name for name in ("contrast", "length_hint", "style_hint", "length_floor", "end_bias")
                  if getattr(self, name)] + (["repetition_penalty"] if self.repetition_penalty != 1.0 else []) + (
                  ["review_candidates"] if self.review_candidates > 1 else [])
        if self.open_answer and self.past_reviews == "document":
            raise ValueError("open_answer begins a chat turn's answer; past_reviews 'document' begins it already (the "
                             "cpu profile's for methods that show past reviews): set past_reviews 'block' or 'demos'")
        extras += ["open_answer"] if self.open_answer else []
        if self.profile_in_entry and self.past_reviews != "document":
            raise ValueError("profile_in_entry places the profile in the document's open entry: set past_reviews "
                             "'document'")
        if self.rrp and (extras or self.past_reviews != "block"):
            raise ValueError(f"RRP's template takes the past reviews as a block and no hints: not with "
                             f"{extras or ['past_reviews ' + self.past_reviews]}")


def stage_names(config: DRPConfig) -> tuple[str, ...]:
    """The LM stages of a program with `config`, in pipeline order: DRP's four, and those its settings add."""
    added = set(USER_SUMMARY_STAGES[config.user_summary]) | ({"reason", "crosscheck"} if config.rrp else set())
    return tuple(name for name in STAGES if name in DRP_STAGES or name in added)


def prompt_state(stage: Stage, adapter: dspy.Adapter | None = None) -> dict[str, dict]:
    """Each predictor of `stage` by name: its signature (instructions, fields) and demos, and with `adapter` the
    messages it makes of them (placeholder inputs)."""
    state = {}
    for name, predictor in stage.named_predictors():
        dump = predictor.dump_state()
        state[name] = {"signature": dump["signature"], "demos": dump["demos"]}
        if adapter is not None:
            placeholders = {field: f"{{{field}}}" for field in predictor.signature.input_fields}
            state[name]["messages"] = adapter.format(predictor.signature, [], placeholders)
    return state


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

    `forward` returns the review (None when a stage it cannot go without gave no usable answer) with every
    intermediate: representatives, differences before and after validation, summary, the per-user summaries it
    used (made or reused), RRP's levels, failures, usage. The other methods of the comparison are settings of it
    (`methods.METHODS`)."""

    def __init__(self, config: DRPConfig = DRPConfig(), embedder: Embedder | None = None):
        super().__init__()
        self.config = config
        self.representatives = SelectRepresentatives(config.m, config.selection, config.seed, embedder)
        self.extract = Extract(config.dimensions, config.attempts)
        self.validate = Validate(config.dimensions, config.attempts)
        self.summarize = Summarize(config.attempts)
        self.generate = Generate(config.contrast, config.attempts, config.length_hint, config.past_reviews,
                                 config.style_hint, config.end_bias, config.repetition_penalty,
                                 config.review_candidates, config.review_pick, config.open_answer,
                                 config.profile_in_entry)
        for cls in (Infer, Recap, Distill, Refine, Reason, CrossCheck):  # only where a setting adds them
            if cls.name in stage_names(config):
                setattr(self, cls.name, cls(config.attempts))
        self.users = UserProfiles()

    def stages(self) -> dict[str, Stage]:
        """The stage modules by name, in pipeline order."""
        return {name: getattr(self, name) for name in stage_names(self.config)}

    def fingerprint(self, adapter: dspy.Adapter | None = None) -> str:
        """A hash of the program's prompts: each stage's signature (instructions, fields) and demos, the defaults or
        an optimizer's, and with `adapter` the messages it makes of them (placeholder inputs); not its LMs (nor
        what an optimizer attaches to the program, e.g. its trial logs). Runs record it, so that a folder made
        with other prompts (an older version, another compiled state, another adapter) is not resumed as if it
        were this program's."""
        state = {f"{name}.{predictor}": prompt for name, stage in self.stages().items()
                 for predictor, prompt in prompt_state(stage, adapter).items()}
        return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def set_stage_lms(self, lms: Mapping[str, dspy.LM]) -> None:
        """Attach one LM per stage (keys: `STAGES`)."""
        for name, stage in self.stages().items():
            stage.set_lm(lms[name])

    def forward(self, task: ReviewTask) -> dspy.Prediction:
        work, compared, comparisons = Work(), [], []
        summary = review = None
        levels: dict[str, Any] = {}
        try:
            if self.config.user_summary != "none":  # POPI, LLM-TRSR, P-DB: a profile made once per user
                summary = self.user_summary(task, work)
            elif self.config.summary_scope == "user":  # Steps 0 to 3a once per user
                summary, comparisons = self.summarized_once(task, work)
            else:
                compared = self.compare(task.comparisons)  # Steps 0 to 2, for every compared item at once
                comparisons = [item.record() for item in compared]
                for item in compared:
                    work.usage.merge(item.usage)
                    work.failures.extend(item.failures)
                evidence = self.evidence(compared)
                summary = (self.summarize(format_history(task.history), evidence or "(none)", usage=work.usage)
                           if self.config.summarize else evidence)  # Step 3a
            review, levels = self.write(task, summary, compared, work)  # Step 3b
        except StageFailure as failure:  # no review: the sample fails, with everything it produced kept
            work.failures.append(failure.record())
        return dspy.Prediction(
            review=review, summary=summary, comparisons=comparisons, failures=work.failures,
            usage=work.usage.stages, retries=work.usage.retries, config=asdict(self.config),
            user_profiles=work.profiles, reasoning=levels, candidates=work.candidates,
        )

    def evidence(self, compared: list[ComparedItem]) -> str | None:
        """What the compared items tell Summarize (or Generate): the differences kept, or CICL's contrasts."""
        if not compared:
            return None
        if self.config.contrast:  # CICL: the reviews themselves, the user's against the others'
            return format_contrasts((c.comparison.item, c.comparison.user_review, c.others) for c in compared)
        return format_differences((c.comparison.item, c.kept) for c in compared)

    def write(self, task: ReviewTask, summary: str | None, compared: list[ComparedItem],
              work: Work) -> tuple[str, dict[str, Any]]:
        """Step 3b: the review, and with RRP the levels of its template. RRP reasons through the template, then
        cross-checks the draft with the retrieved reviews; a cross-check without a usable answer leaves the
        draft, which passed every check of a review, as the review."""
        sources = [review.text for _, review in task.history] + [t for t in (summary, task.item.description) if t]
        rating, title = task.target.rating, task.target.title
        if not self.config.rrp:
            measured = task.history or self.summarized(task)  # POPI shows none: those its summary read
            return self.generate(
                task.item, task.history, summary, rating, title, usage=work.usage, sources=sources,
                length=typical_length(task) if self.config.length_hint else None,
                budget=review_budget(measured), measured=measured,
                style=measured_style(task, compared) if self.config.style_hint else None,
                min_tokens=review_floor(task, self.config.length_floor) if self.config.length_floor else None,
                record=work.candidates,
            ), {}
        reasoned = self.reason(task.item, task.history, rating, title, usage=work.usage, sources=sources)
        levels = {"user_traits": reasoned.user_traits, "item_plan": reasoned.item_plan, "draft": reasoned.review}
        try:
            checked = self.crosscheck(task.item, task.history, rating, title, reasoned.user_traits, reasoned.review,
                                      usage=work.usage, sources=sources)
        except StageFailure as failure:
            work.failures.append(failure.record())
            return reasoned.review.strip(), levels
        return checked.review.strip(), levels | {"inconsistencies": list(checked.inconsistencies)}

    def summarized(self, task: ReviewTask) -> tuple[tuple[Item, Review], ...]:
        """The reviews a per-user summary read: the user's latest before all their targets (none without one)."""
        if self.config.user_summary == "none" and self.config.summary_scope == "target":
            return ()
        return task.user_history[-self.config.user_reviews:]

    def per_user(self, kind: str, user_id: str, reads: Any, stages: list[Stage], make: Callable[[Work], Any],
                 work: Work) -> Any:
        """A summary made once per user, by `make` (charged to this sample) unless a sample of the user made it
        already; keyed by what it reads and the prompts of its `stages`."""
        key = profile_key(kind, user_id, reads, [prompt_state(stage) for stage in stages])
        return work.take(*self.users.get(kind, user_id, key, make))

    def user_summary(self, task: ReviewTask, work: Work) -> str:
        """Generate's profile for POPI, LLM-TRSR or P-DB, from a summary made once per user."""
        reviews = self.summarized(task)
        if not reviews:
            raise ValueError(f"{self.config.user_summary} reads the user's reviews before all their targets, and "
                             "the task holds none: build it for its split (build_task(..., split=))")
        kind = self.config.user_summary
        if kind == "popi":
            return self.per_user(kind, task.user_id, _ids(reviews), [self.infer],
                                 lambda w: self.infer(format_history(reviews[::-1]), usage=w.usage), work)
        if kind == "llm-trsr":
            return self.per_user(kind, task.user_id, _ids(reviews), [self.recap],
                                 lambda w: self.recap_history(reviews, w.usage), work)
        reads = {"user": _ids(reviews), **{n.user_id: _ids(n.reviews[-self.config.user_reviews:])
                                           for n in task.neighbours}}
        persona = self.per_user(kind, task.user_id, reads, [self.distill, self.refine],
                                lambda w: self.persona_of(task, reviews, w), work)
        query = history_query(task.target, task.item)
        return format_persona(persona["traits"], relevant(persona["facts"], query, self.config.persona_facts))

    def recap_history(self, reviews: tuple[tuple[Item, Review], ...], usage: Usage) -> str:
        """LLM-TRSR: the summary of the reviews so far, updated chunk by chunk, oldest first."""
        summary, size = "(none yet)", self.config.chunk_size
        for start in range(0, len(reviews), size):
            summary = self.recap(summary, format_history(reviews[start:start + size]), usage=usage)
        return summary

    def persona_of(self, task: ReviewTask, reviews: tuple[tuple[Item, Review], ...], work: Work) -> dict[str, Any]:
        """P-DB: the user's facts and traits, the traits refined with the personas of similar users (each also made
        once, and reused where that user is a user of the run or another's neighbour). A similar user whose persona
        failed is left out."""
        facts, traits = self.distilled(task.user_id, reviews, work)
        similar = []
        for neighbour in task.neighbours:
            try:
                _, their_traits = self.distilled(neighbour.user_id, neighbour.reviews[-self.config.user_reviews:], work)
                similar.append(their_traits)
            except StageFailure as failure:
                work.failures.append(failure.record() | {"user_id": neighbour.user_id})
        if similar:
            traits = self.refine(format_persona(traits, facts), format_similar_personas(similar), usage=work.usage)
        return {"facts": facts, "traits": traits, "similar_users": [n.user_id for n in task.neighbours]}

    def distilled(self, user_id: str, reviews: tuple[tuple[Item, Review], ...],
                  work: Work) -> tuple[list[str], list[str]]:
        """P-DB's first layers for one user: facts and traits from their reviews, made once per user."""
        def make(w: Work) -> dict[str, list[str]]:
            facts, traits = self.distill(format_history(reviews[::-1]), usage=w.usage)
            return {"facts": facts, "traits": traits}

        persona = self.per_user("persona", user_id, _ids(reviews), [self.distill], make, work)
        return persona["facts"], persona["traits"]

    def summarized_once(self, task: ReviewTask, work: Work) -> tuple[str, list[dict]]:
        """Steps 0 to 3a once per user (`summary_scope = "user"`), from their latest compared items and reviews
        before all their targets: the summary, and the compared items' records."""
        def make(w: Work) -> dict[str, Any]:
            compared = self.compare(task.user_comparisons)
            for item in compared:
                w.usage.merge(item.usage)
                w.failures.extend(item.failures)
            past_reviews = format_history(self.summarized(task)[::-1])
            summary = self.summarize(past_reviews, self.evidence(compared) or "(none)", usage=w.usage)
            return {"summary": summary, "comparisons": [item.record() for item in compared]}

        reads = {"reviews": _ids(task.user_history), "compared": [c.item.asin for c in task.user_comparisons]}
        made = self.per_user("summarize", task.user_id, reads, [self.extract, self.validate, self.summarize], make,
                             work)
        return made["summary"], made["comparisons"]

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


def _ids(reviews: Sequence[tuple[Item, Review]]) -> list[tuple[str, int]]:
    return [(review.asin, review.timestamp) for _, review in reviews]


def relevant(facts: list[str], query: str, k: int) -> list[str]:
    """P-DB's retrieval: the `k` facts BM25 ranks highest for the target's query (ties in the persona's order)."""
    words = [re.findall(r"\w+", fact.lower()) for fact in facts]
    tokens = re.findall(r"\w+", query.lower())
    if not tokens or not any(words):
        return facts[:k]
    scores = BM25Okapi(words).get_scores(tokens)
    return [facts[i] for i in sorted(range(len(facts)), key=lambda i: (-float(scores[i]), i))[:k]]


TOKENS_PER_WORD = 1.4  # review text in the tokenizers of small instruct models, rounded up
MIN_REVIEW_BUDGET = 128


def review_budget(history: Sequence[tuple[Item, Review]]) -> int | None:
    """Generate's answer budget in tokens: twice the longest past review shown (or, shown none, read by a per-user
    summary), with room for the answer's format; None without past reviews. From the user's history only, never
    from the target."""
    counts = [len(review.text.split()) for _, review in history]
    return max(MIN_REVIEW_BUDGET, round(2 * TOKENS_PER_WORD * max(counts)) + 32) if counts else None


def review_floor(task: ReviewTask, share: float) -> int | None:
    """Generate's shortest answer in tokens: `share` of the median past review shown (a 1.5B model, asked for a
    user's review, writes a quarter of their length whatever it is told); None without past reviews."""
    median = median_words(task.history)
    return round(share * TOKENS_PER_WORD * median) if median is not None else None


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
