"""Is a generated text new, or an echo of the prompt? Small models often echo, copy or refuse."""

from __future__ import annotations

import re

_FIELD_MARKERS = re.compile(
    r"\[\[\s*##|^\s*\[?(item|past reviews?|profile summary|review title|rating|review)\]?\s*:\s*$"
    r"|^\s*review \d+ \(of ",
    re.IGNORECASE | re.MULTILINE,
)
_REFUSAL = re.compile(r"^\W*(I'?m sorry|I am sorry|I can(no|')t (assist|help)|As an AI)", re.IGNORECASE)
COPY_SPAN_WORDS = 12
MIN_WORDS = 3


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def review_problem(review: str | None, sources: list[str]) -> str | None:
    """Name what is wrong with `review`, or None if it looks like a review.

    `sources` are the texts shown in the prompt (past reviews, summary): a review that repeats one of
    them word for word over `COPY_SPAN_WORDS` words is a copy, not a new review."""
    if review is None or len(_words(review)) < MIN_WORDS:
        return "empty or too short"
    if _FIELD_MARKERS.search(review):
        return "echoes the prompt's field markers"
    if _REFUSAL.search(review):
        return "a refusal, not a review"
    return copy_problem(review, sources)


def copy_problem(text: str, sources: list[str]) -> str | None:
    """Name it if `text` repeats one of `sources` word for word over `COPY_SPAN_WORDS` words."""
    words = _words(text)
    spans = {tuple(words[i : i + COPY_SPAN_WORDS]) for i in range(len(words) - COPY_SPAN_WORDS + 1)}
    for source in sources:
        src = _words(source)
        if any(tuple(src[i : i + COPY_SPAN_WORDS]) in spans for i in range(len(src) - COPY_SPAN_WORDS + 1)):
            return f"copies {COPY_SPAN_WORDS}+ words verbatim from the prompt"
    return None
