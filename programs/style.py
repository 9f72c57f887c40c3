"""How a user writes, measured in code from their past reviews (beyond the paper): a small model guesses
lengths and habits badly from a description, and a number it is given costs it nothing to follow. Against the
representatives' reviews of the same items, the measures are differences measured, not guessed."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z0-9']+")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_FIRST_PERSON = {"i", "i'm", "i've", "i'd", "i'll", "me", "my", "mine", "myself"}
SAME_RATIO = (0.8, 1.25)  # a length within this ratio of the others' is "like other reviewers"


@dataclass(frozen=True)
class Style:
    """The median review length, and the mean of every other measure over the reviews."""

    words: float  # words per review
    sentence_words: float  # words per sentence
    exclamations: float  # "!" per 100 words
    first_person: float  # I, me, my... per 100 words
    capitals: float  # all-capital words of 2+ letters per 100 words

    @classmethod
    def measure(cls, texts: Sequence[str]) -> Style | None:
        """The style of `texts`, None without any text."""
        rows = []
        for text in texts:
            words = _WORD.findall(text)
            if not words:
                continue
            n = len(words)
            rows.append((n, n / max(1, len(_SENTENCE_END.findall(text.strip() + " "))),
                         100 * text.count("!") / n, 100 * sum(w.lower() in _FIRST_PERSON for w in words) / n,
                         100 * sum(len(w) > 1 and w.isupper() and w.isalpha() for w in words) / n))
        if not rows:
            return None
        words, *rates = zip(*rows)
        return cls(statistics.median(words), *(statistics.fmean(rate) for rate in rates))


def _how_often(per_100_words: float) -> str:
    if per_100_words < 0.05:
        return "never"
    if per_100_words < 0.5:
        return "rarely"
    return "sometimes" if per_100_words < 2 else "often"


def _compared(value: float, other: float | None) -> str:
    if other is None:
        return ""
    low, high = SAME_RATIO
    if other and low <= value / other <= high:
        return f" (like other reviewers of the same items: about {other:.0f})"
    return f" ({'longer' if value > other else 'shorter'} than other reviewers of the same items: about {other:.0f})"


def describe_style(user: Style, others: Style | None = None) -> str:
    """The user's measures in a few plain phrases; lengths beside the other reviewers' where they are given."""
    return (f"reviews of about {user.words:.0f} words{_compared(user.words, others and others.words)}; "
            f"sentences of about {user.sentence_words:.0f} words"
            f"{_compared(user.sentence_words, others and others.sentence_words)}; "
            f"exclamation marks: {_how_often(user.exclamations)}; first person (I, me, my): "
            f"{_how_often(user.first_person)}; words in all capitals: {_how_often(user.capitals)}")
