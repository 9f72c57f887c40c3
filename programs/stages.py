"""Steps 1 to 3 of DRP, and the stages the other methods add (POPI's, LLM-TRSR's, P-DB's, RRP's), as DSPy
modules, one per stage; each can carry its own LM (`set_lm`)."""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import dspy
from dspy.utils.exceptions import AdapterParseError

from ..data.schema import Item, Review
from ..serving import DocumentAdapter, OpenedAnswerAdapter, end_of_turn_token, repetition_penalty as penalty_fields
from ..signatures import (
    CrossCheckReview,
    DifferenceFeature,
    DistillPersona,
    ExtractContentDifferences,
    ExtractDifferences,
    ExtractFixedDifferences,
    GenerateContrastiveReview,
    GenerateReview,
    InferPreferences,
    ReasonedReview,
    RecapHistory,
    REVIEW_DOCUMENT,
    RefinePersona,
    SummarizeProfile,
    ValidateContentDifferences,
    ValidateDifferences,
)

from .calls import call_stage
from .checks import (commentary_start, copy_problem, feature_list_problem, forced_problem, lead_in_end, refusal_problem,
                     review_problem, skipped_level_problem, too_short_problem, uncited_problem)
from .formatting import format_history, format_item, format_numbered_features, format_others, format_review
from .usage import Usage

Check = Callable[[dspy.Prediction], str | None]


class Stage(dspy.Module):
    """A step of the program that calls an LM: `name` is its key in LM settings, usage and failure records."""

    name: ClassVar[str]
    answer_tokens: ClassVar[int]
    """The longest answer the stage needs, in tokens (its LM's max_tokens caps it): an answer that rambles on
    ends there, and, cut off, is retried, instead of running to the LM's max_tokens."""

    def __init__(self, attempts: int):
        super().__init__()
        self.attempts = attempts

    @property
    def lm(self) -> dspy.LM | None:
        return self.predictors()[0].lm or dspy.settings.lm

    def sampling(self, tokens: int | None = None, min_tokens: int | None = None,
                 end_bias: float = 0.0, repetition_penalty: float = 1.0) -> dict[str, Any]:
        """The request settings of a call: at most `tokens` (default `answer_tokens`), capped by the max_tokens
        of the stage's LM; with `min_tokens`, no end before that many (vLLM's `min_tokens`), with `end_bias`,
        that much added to the logit of the token that ends the answer (below 0: ends later, never forced; the
        token asked of the server), and `repetition_penalty` (above 1: a token of the prompt or the answer so far
        is less likely again; `serving.repetition_penalty`). All are sent beside the LM's own `extra_body`."""
        settings = self.lm.kwargs if self.lm is not None else {}
        cap = settings.get("max_tokens")
        wanted = tokens or self.answer_tokens
        sampling: dict[str, Any] = {"max_tokens": min(wanted, cap) if cap else wanted}
        extra: dict[str, Any] = {}
        if min_tokens:
            extra["min_tokens"] = min(min_tokens, sampling["max_tokens"])
        if end_bias:
            extra["logit_bias"] = {str(_end_token(self.lm)): end_bias}
        if repetition_penalty != 1.0:
            extra |= penalty_fields(repetition_penalty)
        if extra:
            sampling["extra_body"] = {**settings.get("extra_body", {}), **extra}
        return sampling


@functools.cache
def _end_token_at(base_url: str, model: str) -> int:
    return end_of_turn_token(base_url, model)


def _end_token(lm: dspy.LM | None) -> int:
    """The end-of-answer token of the model behind `lm`, asked once of its server (the first, of replicas)."""
    if lm is None:
        raise ValueError("end_bias needs the stage's LM, and there is none")
    base = lm.kwargs.get("api_base") or next(iter(getattr(lm.engine, "api_bases", ())), None)
    if base is None:
        raise ValueError(f"end_bias needs the base URL of the server of {lm.model}")
    return _end_token_at(base, lm.model.split("/", 1)[-1])


Dimensions = Literal["discovered", "with-content", "fixed"]
"""Step 1's dimensions: found by the LM in the user's style (the paper), found in what the user writes about as
well, or DPL's three fixed ones."""


def _no_features(prediction: dspy.Prediction) -> str | None:
    return None if prediction.differences else "no difference features in the answer"


class Extract(Stage):
    """Step 1: a (reasoning) LM names the dimensions on which the user's review differs from the others'."""

    name = "extract"
    answer_tokens = 1024  # reasoning, then the features (measured: 330 tokens a call on average)

    SIGNATURES = {"discovered": ExtractDifferences, "with-content": ExtractContentDifferences,
                  "fixed": ExtractFixedDifferences}

    def __init__(self, dimensions: Dimensions = "discovered", attempts: int = 3):
        super().__init__(attempts)
        self.predict = dspy.ChainOfThought(self.SIGNATURES[dimensions])

    def forward(self, item: Item, user_review: Review, others: list[Review], usage: Usage) -> list[DifferenceFeature]:
        prediction = call_stage(
            self.name, self.predict, usage, self.attempts, check=_no_features, sampling=self.sampling(),
            item=format_item(item), user_review=format_review(user_review),
            other_reviews=format_others(others),
        )
        return list(prediction.differences)


class Validate(Stage):
    """Step 2: a second pass keeps only the features the reviews support."""

    name = "validate"
    answer_tokens = 512  # reasoning, then the numbers kept (measured: 170)

    def __init__(self, dimensions: Dimensions = "discovered", attempts: int = 3):
        super().__init__(attempts)
        self.predict = dspy.ChainOfThought(
            ValidateContentDifferences if dimensions == "with-content" else ValidateDifferences)

    def forward(self, item: Item, user_review: Review, others: list[Review],
                features: list[DifferenceFeature], usage: Usage) -> list[DifferenceFeature]:
        def out_of_range(prediction: dspy.Prediction) -> str | None:
            bad = [n for n in prediction.keep if not 1 <= n <= len(features)]
            return f"kept feature numbers out of range: {bad}" if bad else None

        prediction = call_stage(
            self.name, self.predict, usage, self.attempts, check=out_of_range, sampling=self.sampling(),
            item=format_item(item), user_review=format_review(user_review),
            other_reviews=format_others(others), differences=format_numbered_features(features),
        )
        keep = set(prediction.keep)
        return [feature for i, feature in enumerate(features, 1) if i in keep]


class Summarize(Stage):
    """Step 3a: a profile summary from the retrieved history and the validated differences."""

    name = "summarize"
    answer_tokens = 512  # a paragraph (measured: 290)

    def __init__(self, attempts: int = 3):
        super().__init__(attempts)
        self.predict = dspy.Predict(SummarizeProfile)

    def forward(self, past_reviews: str, differences: str, usage: Usage) -> str:
        a_summary = _a_summary("summary")
        copied = _copied("summary", [past_reviews, self.predict.signature.instructions])

        def not_a_summary(prediction: dspy.Prediction) -> str | None:
            # Restating the differences is what a summary does; re-listing them is not.
            return a_summary(prediction) or copied(prediction) or feature_list_problem(prediction.summary)

        return call_stage(self.name, self.predict, usage, self.attempts, check=not_a_summary,
                          sampling=self.sampling(), past_reviews=past_reviews, differences=differences).summary.strip()


class Generate(Stage):
    """Step 3b: the review, from the history and the profile (the summary, or CICL's contrast examples);
    an echo of the prompt, or an answer far shorter than any past review, is retried. A length floor or an end
    bias holds until an answer fails in a way they can force (a loop, a copy of the prompt): the attempts left go
    without."""

    name = "generate"
    answer_tokens = 512  # a review, when no past review gives this user's length (`review_budget`)

    def __init__(self, contrastive: bool = False, attempts: int = 3, length_hint: bool = False,
                 past_reviews: Literal["block", "demos", "document"] = "block", style_hint: bool = False,
                 end_bias: float = 0.0, repetition_penalty: float = 1.0, review_candidates: int = 1,
                 review_pick: Literal["length", "similarity"] = "length", open_answer: bool = False,
                 profile_in_entry: bool = False):
        super().__init__(attempts)
        self.end_bias, self.repetition_penalty = end_bias, repetition_penalty
        self.candidates, self.pick = review_candidates, review_pick
        signature = GenerateContrastiveReview if contrastive else GenerateReview
        if length_hint:
            signature = signature.insert(-1, "review_length", dspy.InputField(
                desc="how long your reviews are: write about this many words"), type_=str)
        if style_hint:
            signature = signature.insert(-1, "writing_style", dspy.InputField(
                desc="your style, measured from your past reviews: follow it, length above all"), type_=str)
        if past_reviews != "block":  # the past reviews come as earlier turns, or earlier entries of the document
            signature = signature.delete("past_reviews")
        self.predict = dspy.Predict(signature)
        self.profile_field = "contrast_examples" if contrastive else "profile_summary"
        self.past_reviews, self.open_answer, self.profile_in_entry = past_reviews, open_answer, profile_in_entry

    def forward(self, item: Item, history: Sequence[tuple[Item, Review]], profile: str | None, rating: float,
                review_title: str, usage: Usage, sources: list[str], length: str | None = None,
                budget: int | None = None, style: str | None = None, min_tokens: int | None = None,
                record: list[dict[str, Any]] | None = None,
                measured: Sequence[tuple[Item, Review]] | None = None) -> str:
        """With `candidates` above 1, the user's past reviews pick the review among them (`candidate_score`), and
        `record` gets every candidate of the last attempt; without past reviews the greedy review is the only one.
        The pick and the length check measure against `measured`, the past reviews the program knows: those shown
        (the default), or for POPI, which shows none, those its summary read (measured in code, never shown)."""
        measured = history if measured is None else measured
        def not_a_review(prediction: dspy.Prediction) -> str | None:
            # the instruction as it is now (an optimizer may have changed it) is in the prompt too
            return review_problem(prediction.review, [*sources, self.predict.signature.instructions])

        def too_short(prediction: dspy.Prediction) -> str | None:  # retried, but better than no review
            return too_short_problem(prediction.review, [review.text for _, review in measured])

        inputs = {"item": format_item(item), "rating": rating, "review_title": review_title,
                  self.profile_field: profile, "review_length": length, "writing_style": style}
        if self.past_reviews == "block":
            demos, inputs["past_reviews"] = None, format_history(history) if history else None
        else:  # most relevant last, nearest the request
            demos = [{"item": format_item(it), "rating": review.rating, "review_title": review.title,
                      "review": review.text} for it, review in reversed(history)]
        signature, inputs = _given(self.predict.signature, inputs)
        predict = self.predict
        if self.candidates > 1 and measured:  # a user with no past review: the greedy one alone
            predict = _best_candidate(predict, self.candidates, candidate_score(self.pick, measured),
                                      usable=lambda p: not_a_review(p) or too_short(p),
                                      record=record if record is not None else [])
        with dspy.context(**self.framing()):
            return call_stage(
                self.name, _review_only(self.name, predict, usage), usage, self.attempts,
                check=not_a_review, soft_check=too_short,
                sampling=self.sampling(budget, min_tokens, self.end_bias, self.repetition_penalty),
                fallback=(self.sampling(budget, repetition_penalty=self.repetition_penalty)
                          if min_tokens or self.end_bias else None),
                fallback_after=forced_problem, signature=signature,
                **({"demos": demos} if demos is not None else {}), **inputs,
            ).review.strip()

    def framing(self) -> dict[str, Any]:
        """The adapter that begins the review's answer, around the run's adapter: the document of past reviews
        (`past_reviews="document"`; the profile a line under its heading, or of the open entry with
        `profile_in_entry`), or a chat turn's answer begun as a review page's entry (`open_answer`)."""
        fallback = dspy.settings.adapter or dspy.JSONAdapter()
        if self.past_reviews == "document":
            entry = ("item", "rating", "review_title") + ((self.profile_field,) if self.profile_in_entry else ())
            return {"adapter": DocumentAdapter(REVIEW_DOCUMENT, entry, fallback)}
        if self.open_answer:
            return {"adapter": OpenedAnswerAdapter(("rating", "review_title"), fallback)}
        return {}


CANDIDATE_TEMPERATURE = 0.8
"""The temperature of Generate's sampled candidates (`candidates`): greedy decoding gives the 1.5B model's shortest
reviews, sampled ones run longer (README, "Measured here": "Lengths")."""
SAMPLED_PER_REQUEST = 3
"""Generate's sampled candidates are asked for in requests of at most this many (vLLM's `n`), the first keyed in
DSPy's cache as it always was and each later one by a rollout id of its own: a run with more candidates reuses
the answers of a run with fewer and samples only the rest (vLLM's prefix cache serves the repeated prompt)."""


def review_words(text: str) -> int:
    """A review's length in words (as the user's is measured: whitespace split), a comment on it left out."""
    return len(_review_part(text).split())


def median_words(history: Sequence[tuple[Item, Review]]) -> float | None:
    """The user's typical length: the median word count of the past reviews shown (None without any). From the
    user's history only, never from the target."""
    return statistics.median(len(review.text.split()) for _, review in history) if history else None


def candidate_score(pick: Literal["length", "similarity"],
                    history: Sequence[tuple[Item, Review]]) -> Callable[[str], float]:
    """How a review candidate ranks (higher: kept), from the past reviews shown only, never the target. `length`:
    nearest the median past review's length; `similarity`: most like the past reviews in words (ROUGE-1 F against
    them all, rouge-score's tokens, no stemmer), which also favours the user's length, as its recall grows with it."""
    if pick == "length":
        words = median_words(history)
        return lambda text: -abs(review_words(text) - words)
    from rouge_score import rouge_scorer

    scorer, past = rouge_scorer.RougeScorer(["rouge1"]), " ".join(review.text for _, review in history)
    return lambda text: scorer.score(past, _review_part(text))["rouge1"].fmeasure


def _review_span(text: str) -> tuple[int | None, int | None]:
    """Where the review in `text` starts after a line announcing it (`lead_in_end`) and ends before a comment on it
    (`commentary_start`): None where `text` has neither."""
    return lead_in_end(text), commentary_start(text)


def _review_part(text: str) -> str:
    """The review in `text` (`_review_span`), as the pick and the length check measure it."""
    start, end = _review_span(text)
    return text[start or 0:end]


def _best_candidate(predict: Callable[..., dspy.Prediction], candidates: int, score: Callable[[str], float],
                    usable: Check, record: list[dict[str, Any]]) -> Callable[..., dspy.Prediction]:
    """`predict` answered once as configured and `candidates - 1` times more, sampled in requests of at most
    `SAMPLED_PER_REQUEST` (vLLM's `n`: the prompt is computed once for all of a request's); of the answers that pass
    `usable`, the one `score` ranks first. When none passes, the first answer, for the stage's checks to reject; a
    sampled request with an answer DSPy cannot parse (an empty one) adds none. `record` holds each answer of the
    latest call."""
    def best(config: dict[str, Any] | None = None, **inputs: Any) -> dspy.Prediction:
        config = config or {}
        answers = [predict(**inputs, config=config)]
        for start in range(0, candidates - 1, SAMPLED_PER_REQUEST):
            # the first request as runs have always sent it (a retry's rollout id, if any); later ones apart
            rollout = {} if start == 0 else {"rollout_id": f"{config.get('rollout_id', 0)}-{start}"}
            n = min(SAMPLED_PER_REQUEST, candidates - 1 - start)
            try:
                sampled = predict(**inputs, config={**config, **rollout, "n": n, "temperature": CANDIDATE_TEMPERATURE})
            except AdapterParseError:
                continue
            answers += [dspy.Prediction(review=review) for review in sampled.completions.review]
        fit = [usable(answer) is None for answer in answers]
        scores = [score(answer.review or "") for answer in answers]
        kept = max((i for i, ok in enumerate(fit) if ok), key=scores.__getitem__, default=0)  # ties: the earlier
        record[:] = [{"review": answer.review, "usable": ok, "score": round(value, 4), "picked": i == kept}
                     for i, (answer, ok, value) in enumerate(zip(answers, fit, scores))]
        return answers[kept]
    return best


def _review_only(stage: str, predict: dspy.Predict, usage: Usage) -> Callable[..., dspy.Prediction]:
    """`predict`, its review cut where the model stops writing it and starts commenting on it
    (`commentary_start`), and after a line announcing it (`lead_in_end`): the review between is kept, and checked as
    any answer. A cut asks nothing again; it is recorded with the sample's retries, so that it is seen."""
    def review_only(**inputs: Any) -> dspy.Prediction:
        prediction = predict(**inputs)
        text = prediction.review or ""
        start, end = _review_span(text)
        if end is not None:
            usage.retries.append({"stage": stage, "problem": "a comment on the review, cut off (not retried): "
                                                             f"{text[end:].strip()[:300]!r}"})
        if start is not None:
            usage.retries.append({"stage": stage, "problem": "a line announcing the review, cut off (not retried): "
                                                             f"{text[:start].strip()[:300]!r}"})
        if start is not None or end is not None:
            prediction.review = text[start or 0:end].rstrip()
        return prediction
    return review_only


def _given(signature: type[dspy.Signature], inputs: dict[str, Any]) -> tuple[type[dspy.Signature], dict[str, Any]]:
    """The signature and inputs without the inputs that are None: what the method does not have (non-p's
    history, rag's profile) is left out of the prompt, not shown empty."""
    inputs = {name: value for name, value in inputs.items() if value is not None}
    for name in [name for name in signature.input_fields if name not in inputs]:
        signature = signature.delete(name)
    return signature, inputs


def _a_summary(field: str) -> Check:
    """The check of a stage that answers with a summary text: retried when empty or a refusal."""
    def problem(prediction: dspy.Prediction) -> str | None:
        text = getattr(prediction, field) or ""
        return f"empty {field.replace('_', ' ')}" if not text.strip() else refusal_problem(text)

    return problem


def _copied(field: str, sources: list[str]) -> Check:
    """Retried when the summary is mostly a copy of the prompt (its reviews, its instruction). The summaries made
    once per user take it as a soft problem (`call_stage`): a copied review still tells Generate about the user,
    where a failed summary fails every target of the user (3 of 40 users lost LLM-TRSR's summary so)."""
    return lambda prediction: copy_problem(getattr(prediction, field) or "", sources)


class Infer(Stage):
    """POPI's preference inference: a short summary of the user's preferences from their past reviews, made once
    per user and shown to Generate instead of the reviews."""

    name = "infer"
    answer_tokens = 256  # a few sentences: the summary exists to shorten Generate's context

    def __init__(self, attempts: int = 3):
        super().__init__(attempts)
        self.predict = dspy.Predict(InferPreferences)

    def forward(self, past_reviews: str, usage: Usage) -> str:
        copied = _copied("preferences", [past_reviews, self.predict.signature.instructions])
        return call_stage(self.name, self.predict, usage, self.attempts, check=_a_summary("preferences"),
                          soft_check=copied, sampling=self.sampling(), past_reviews=past_reviews).preferences.strip()


class Recap(Stage):
    """LLM-TRSR's recurrent summarization: the summary of the user's reviews so far, updated with the next chunk."""

    name = "recap"
    answer_tokens = 512  # a paragraph, as Summarize's

    def __init__(self, attempts: int = 3):
        super().__init__(attempts)
        self.predict = dspy.Predict(RecapHistory)

    def forward(self, summary_so_far: str, next_reviews: str, usage: Usage) -> str:
        copied = _copied("summary", [next_reviews, self.predict.signature.instructions])
        return call_stage(self.name, self.predict, usage, self.attempts, check=_a_summary("summary"),
                          soft_check=copied, sampling=self.sampling(), summary_so_far=summary_so_far,
                          next_reviews=next_reviews).summary.strip()


def _lines(field: str) -> Check:
    """The check of a list answer: retried when it holds no line with text."""
    def problem(prediction: dspy.Prediction) -> str | None:
        return None if [line for line in getattr(prediction, field) if line.strip()] else f"no {field} in the answer"

    return problem


class Distill(Stage):
    """P-DB's persona: the facts the user's past reviews support, and the traits induced from them."""

    name = "distill"
    answer_tokens = 768  # two lists of short sentences

    def __init__(self, attempts: int = 3):
        super().__init__(attempts)
        self.predict = dspy.Predict(DistillPersona)

    def forward(self, past_reviews: str, usage: Usage) -> tuple[list[str], list[str]]:
        facts, traits = _lines("facts"), _lines("traits")
        prediction = call_stage(self.name, self.predict, usage, self.attempts,
                                check=lambda p: facts(p) or traits(p), sampling=self.sampling(),
                                past_reviews=past_reviews)
        return _kept(prediction.facts), _kept(prediction.traits)


class Refine(Stage):
    """P-DB's collaborative refinement: the user's traits, checked and completed with similar users' personas."""

    name = "refine"
    answer_tokens = 512

    def __init__(self, attempts: int = 3):
        super().__init__(attempts)
        self.predict = dspy.Predict(RefinePersona)

    def forward(self, persona: str, similar_personas: str, usage: Usage) -> list[str]:
        return _kept(call_stage(self.name, self.predict, usage, self.attempts, check=_lines("traits"),
                                sampling=self.sampling(), persona=persona, similar_personas=similar_personas).traits)


def _kept(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip()]


def _review_inputs(item: Item, history: Sequence[tuple[Item, Review]], rating: float,
                   review_title: str) -> dict[str, Any]:
    return {"past_reviews": format_history(history) if history else None, "item": format_item(item),
            "rating": rating, "review_title": review_title}


class Reason(Stage):
    """RRP's generation: the review through a hierarchical thought template as typed fields (the user's traits
    drawn from the retrieved reviews, a plan for this item, the review). The intervention: an answer that leaves
    a level out, or whose plan already is the review, is retried; traits that cite no retrieved review, or only
    list them, are retried too, but kept if no attempt does better."""

    name = "reason"
    # the LM's max_tokens caps it (1024 by default): a `<think>` model's thinking counts, give its LM more
    answer_tokens = 4096

    def __init__(self, attempts: int = 3):
        super().__init__(attempts)
        self.predict = dspy.Predict(ReasonedReview)

    def forward(self, item: Item, history: Sequence[tuple[Item, Review]], rating: float, review_title: str,
                usage: Usage, sources: list[str]) -> dspy.Prediction:
        def skipped(p: dspy.Prediction) -> str | None:
            return (skipped_level_problem([("user traits", p.user_traits), ("item plan", p.item_plan),
                                           ("review", p.review)])
                    or review_problem(p.review, [*sources, self.predict.signature.instructions]))

        def loose(p: dspy.Prediction) -> str | None:
            return ((uncited_problem(p.user_traits) if history else None)
                    or too_short_problem(p.review, [review.text for _, review in history]))

        signature, inputs = _given(self.predict.signature, _review_inputs(item, history, rating, review_title))
        return call_stage(self.name, _review_only(self.name, self.predict, usage), usage, self.attempts,
                          check=skipped, soft_check=loose, sampling=self.sampling(), signature=signature, **inputs)


class CrossCheck(Stage):
    """RRP's cross-referencing: the draft checked against the retrieved reviews and revised where it departs
    from them, before it is final."""

    name = "crosscheck"
    answer_tokens = 4096  # as Reason's

    def __init__(self, attempts: int = 3):
        super().__init__(attempts)
        self.predict = dspy.Predict(CrossCheckReview)

    def forward(self, item: Item, history: Sequence[tuple[Item, Review]], rating: float, review_title: str,
                user_traits: str, draft: str, usage: Usage, sources: list[str]) -> dspy.Prediction:
        def not_a_review(p: dspy.Prediction) -> str | None:  # keeping a consistent draft as it is is no copy
            return review_problem(p.review, [*sources, self.predict.signature.instructions])

        def too_short(p: dspy.Prediction) -> str | None:
            return too_short_problem(p.review, [review.text for _, review in history])

        signature, inputs = _given(self.predict.signature, _review_inputs(item, history, rating, review_title)
                                   | {"user_traits": user_traits, "draft": draft})
        return call_stage(self.name, _review_only(self.name, self.predict, usage), usage, self.attempts,
                          check=not_a_review, soft_check=too_short, sampling=self.sampling(), signature=signature,
                          **inputs)
