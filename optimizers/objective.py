"""The per-example metric optimizers maximize, with the textual feedback GEPA reflects on: sentence BLEU
(the corpus metric's settings with effective order, as `sacrebleu.sentence_bleu`), ROUGE-L F, or a mix, from
the metric classes of drpkit.metrics, each scaled to 0-1."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import dspy

from ..metrics import BLEU, ROUGE

OBJECTIVES = ("bleu", "rougeL", "mix")

_WORD = re.compile(r"[A-Za-z']+")
_POSITIVE = frozenset(
    "love loved loves great amazing awesome excellent wonderful fantastic beautiful best perfect favorite "
    "enjoy enjoyed brilliant superb good nice fun recommend classic masterpiece gem happy incredible".split())
_NEGATIVE = frozenset(
    "bad worst terrible awful boring disappointing disappointed poor waste hate hated weak dull annoying "
    "mediocre overrated overpriced muddy bland cheap lame horrible unfortunately sadly not".split())
_STOPWORDS = frozenset(
    "the a an and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those i me my we our you your he she they them his her their there here what which who whom when "
    "where why how all any both each few more most other some such no nor only own same so than too very can "
    "will just don should now also about into over after before again then once have has had do does did "
    "would could one two get got like really much even still well".split())


_BLEU, _ROUGE = BLEU(), ROUGE()


def sentence_bleu(prediction: str, reference: str) -> float:
    """Sentence BLEU of one pair, 0-1."""
    return _BLEU.sentence_score(prediction, reference)["bleu"] / _BLEU.scale


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F of one pair, 0-1."""
    return _ROUGE.sentence_score(prediction, reference)["rougeL"]


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _sentiment(words: list[str]) -> tuple[int, int]:
    lower = [w.lower() for w in words]
    return sum(w in _POSITIVE for w in lower), sum(w in _NEGATIVE for w in lower)


def review_feedback(review: str | None, reference: str, rating: float, failure: str | None = None) -> str:
    """What a generated review missed compared with the user's real one: length, tone, agreement with the
    rating, vocabulary; for a failed sample, why it failed."""
    if review is None:
        return (f"No review was produced: {failure or 'the program failed'}. The answer must be a plain review "
                f"text in the requested output format, written in the user's voice, not a copy of the prompt.")
    notes = []
    got, want = _words(review), _words(reference)
    if want and not 0.75 <= len(got) / len(want) <= 1.33:
        direction = "shorter" if len(got) > len(want) else "longer"
        notes.append(f"Length: the review has {len(got)} words but the user's real review has {len(want)}; "
                     f"write {direction}, as this user does.")
    got_bang, want_bang = review.count("!"), reference.count("!")
    if (got_bang > 0) != (want_bang > 0):
        notes.append(f"Tone: the real review uses {want_bang} exclamation mark(s), the generated one {got_bang}.")
    got_caps = sum(w.isupper() and len(w) > 1 for w in got)
    want_caps = sum(w.isupper() and len(w) > 1 for w in want)
    if (got_caps > 0) != (want_caps > 0):
        notes.append(f"Tone: the real review has {want_caps} all-caps word(s), the generated one {got_caps}.")
    got_pos, got_neg = _sentiment(got)
    want_pos, want_neg = _sentiment(want)
    if (got_pos > got_neg) != (want_pos > want_neg) or (got_neg > got_pos) != (want_neg > want_pos):
        notes.append(f"Tone: the real review has {want_pos} positive and {want_neg} negative sentiment words, "
                     f"the generated one {got_pos} and {got_neg}.")
    if rating >= 4 and got_neg > got_pos:
        notes.append(f"Rating: the user rated the item {rating:g}/5 but the review sounds negative.")
    elif rating <= 2 and got_pos > got_neg:
        notes.append(f"Rating: the user rated the item {rating:g}/5 but the review sounds positive.")
    have = {w.lower() for w in got}
    keys = Counter(w.lower() for w in want if len(w) > 3 and w.lower() not in _STOPWORDS)
    missing = [w for w, _ in keys.most_common() if w not in have][:8]
    if missing:
        notes.append(f"Vocabulary: the real review uses words the generated one lacks: {', '.join(missing)}.")
    return " ".join(notes) or "The review matches the user's real review in length, tone, rating and vocabulary."


@dataclass(frozen=True)
class ReviewMetric:
    """A DSPy metric for MIPROv2, COPRO and GEPA: `name` is bleu, rougeL or mix
    (`bleu_weight` * BLEU + (1 - `bleu_weight`) * ROUGE-L); a failed sample scores 0."""

    name: str = "mix"
    bleu_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ValueError(f"metric {self.name!r}: expected one of {OBJECTIVES}")

    def score(self, review: str, reference: str) -> float:
        if self.name == "bleu":
            return sentence_bleu(review, reference)
        if self.name == "rougeL":
            return rouge_l(review, reference)
        return self.bleu_weight * sentence_bleu(review, reference) + (1 - self.bleu_weight) * rouge_l(review, reference)

    def __call__(self, example: dspy.Example, prediction: Any, trace: Any = None, pred_name: str | None = None,
                 pred_trace: Any = None) -> dspy.Prediction:
        review = getattr(prediction, "review", None)
        failures = getattr(prediction, "failures", None) or []
        failure = "; ".join(failures[-1]["problems"][-1:]) if failures and review is None else None
        value = self.score(review, example.reference) if review else 0.0
        feedback = review_feedback(review, example.reference, example.task.target.rating, failure)
        return dspy.Prediction(score=value, feedback=f"Score {value:.3f} ({self.name}). {feedback}")
