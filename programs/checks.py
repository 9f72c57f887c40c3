"""Is a generated text new, or an echo of the prompt? Small models often echo, copy or refuse."""

from __future__ import annotations

import re
import unicodedata

_FIELD_MARKERS = re.compile(
    r"\[\[\s*##|^\s*\[?(item|past reviews?|profile summary|review title|rating|review)\]?\s*:\s*$"
    r"|^\s*review \d+ \(of ",
    re.IGNORECASE | re.MULTILINE,
)
# after an interjection ("Oh no, I'm sorry, but I can't assist with that."), and however the model names itself
# ("As an artificial intelligence language model, I don't have personal opinions...")
_INTERJECTION = r"^\W*((oh|well|unfortunately)( no)?\W+)?"
_REFUSAL = re.compile(_INTERJECTION + r"(I'?m|I am) (so |very )?sorry,? (but )?(I|as)\b[^.!?]{0,60}\b(can(no|')?t|can not"
                      r"|am unable|won'?t|do(n'?t| not) have (enough |any )?(information|details|access))\b|"
                      + _INTERJECTION + r"I can(no|')t (assist|help(?! but\b))"
                      r"|^[^.!?]{0,40}\bas an? (AI|artificial intelligence|(large )?language model)\b", re.IGNORECASE)
# a shop assistant's answer to the customer ("I'm sorry to hear that you didn't enjoy...", "So glad you liked it!"),
# not the customer's own review
_REPLY = re.compile(r"^\W*(oh( no)?\W+)?((I'?m|I am|we'?re|we are)\s+)?(so\s+|very\s+|really\s+)?"
                    r"(sorry|glad|happy|thrilled|excited)\s+(to hear|that you|you)\b|^\W*thank(s| you) for (your|sharing)",
                    re.IGNORECASE)
# a sentence that comments on the review instead of going on with it ("This review matches the length, tone,
# vocabulary and habits of...", "The reviewer expresses enthusiasm for the album, which aligns with the user's
# profile summary"): the 1.5B model appended one to half its reviews without past reviews to continue; none of the
# 1,775 reviews of the shared data has one ("This review is dedicated to my son" is no comment)
_COMMENTARY = re.compile(
    r"(?:^|(?<=[.!?\n]))[\s\"']*(?:(?:note|n\.?b\.?|p\.?s\.?)\s*:\s*(?:the|this)\s+review\b|"  # a note on the review
    r"(?:overall,\s+)?(?:the|this)\s+(?:reviewer(?:'s\s+(?:tone|overall|ability|use|style"
    r"|language|writing)|\s+(?:expresses|also|provides|uses|praises|describes|highlights|mentions))|review(?:'s)?\s+"
    r"(?:matches|demonstrates|expresses|reflects|provides|ends|adheres|meets|includes|captures|conveys"
    r"|highlights|also|is\s+(?:highly|clear|concise|well|written|overwhelmingly|positive|negative|entirely|consistent"
    r"|informative|\d))))\b", re.IGNORECASE)
# a heading line ("#Personal Note#", "## Summary"): the sampled 1.5B model went on under one to describe its reviews
# ("For each individual item, I am providing detailed reviews"); no review of the shared data has a line starting
# with "#" ("#1 on the charts" is no heading)
_HEADING = re.compile(r"\s*^[ \t]*#+[ \t]*[^\W\d]", re.MULTILINE)
# a first line that announces the review ("Sure, here's the review text in your own voice:", "Sure, I'd be happy to
# write your review for you. Let's dive into it."): the 1.5B model, asked in a chat turn, opened about 1 review in 40
# so; no review of the shared data has a line break, and those that open with "Sure" or "Here's" go on in the line
_LEAD_IN = re.compile(r"\A\W*(?:sure|certainly|of course|absolutely|okay|here(?:'s| is)|below is)\b[^\n]{0,120}?"
                      r"\breview\b[^\n]{0,80}\n\s*(?=\S)", re.IGNORECASE)
COPY_SPAN_WORDS = 12
MIN_WORDS = 3  # shorter answers count as empty
COPY_SHARE = 0.5
MIN_COPY_WORDS = 6  # a shared phrase shorter than this is the user's habit, not a copy
# of the 1,585 distinct reviews in the shared Digital Music data, the most repetitive (a list of chart positions)
# repeats 16.5% of its 4-word phrases, 99% repeat under 3.2%; the 1.5B model's template loops repeat 20-90%
LOOP_GRAM_WORDS = 4
LOOP_SHARE = 0.2
LOOP_MIN_GRAMS = 20  # too few phrases to tell a loop from a refrain


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def commentary_start(review: str) -> int | None:
    """Where `review` stops being the review and starts commenting on it (or goes on under a heading), if it does."""
    starts = [match.start() for match in (_COMMENTARY.search(review), _HEADING.search(review)) if match]
    return min(starts, default=None)


def lead_in_end(review: str) -> int | None:
    """Where the review starts after a line of its own that announces it, if one does."""
    match = _LEAD_IN.match(review)
    return match.end() if match else None


def review_problem(review: str | None, sources: list[str]) -> str | None:
    """Name what is wrong with `review`, or None if it looks like a review.

    `sources` are the texts shown in the prompt (past reviews, summary, item description)."""
    if review is None or len(_words(review)) < MIN_WORDS:
        return "empty or too short"
    if _FIELD_MARKERS.search(review):
        return "echoes the prompt's field markers"
    return (refusal_problem(review) or reply_problem(review) or repetition_problem(review)
            or script_problem(review, sources) or copy_problem(review, sources))


def _scripts(text: str) -> set[str]:
    """The writing systems of `text`'s letters, by the first word of their Unicode names (LATIN, CJK, HANGUL...)."""
    return {unicodedata.name(char, "?").split()[0] for char in set(text) if char.isalpha()}


def script_problem(text: str, sources: list[str]) -> str | None:
    """Letters of a writing system no text of the prompt uses: the Qwen models slip into Chinese when sampled ("a
    hit certified gold by the British Columbia唱片 company"), in 16 of 480 candidates at temperature 0.8; none of the
    shared data's reviews has a Chinese character. Without the prompt's letters nothing is checked."""
    known = set().union(*map(_scripts, sources))
    foreign = _scripts(text) - known
    return f"switches to another script ({', '.join(sorted(foreign))})" if known and foreign else None


SHORT_SHARE = 0.5


def too_short_problem(review: str | None, past_reviews: list[str]) -> str | None:
    """An answer under half as long as the user's shortest past review is no review of theirs (a 3-word
    answer from a user who writes paragraphs); without past reviews nothing is checked."""
    words = len(_words(review or ""))
    shortest = min((len(_words(text)) for text in past_reviews), default=0)
    if words < SHORT_SHARE * shortest:
        return f"{words} words, far shorter than any of the user's reviews (the shortest has {shortest})"
    return None


def forced_problem(problem: str) -> bool:
    """Whether an answer's problem is one that decoding past the model's own end can make: a loop, the prompt's
    markers or text copied to fill the length (not a refusal or a reply, which come first)."""
    return problem.startswith(("repeats itself", "echoes the prompt's field markers")) or "copied verbatim" in problem


def repetition_problem(text: str) -> str | None:
    """A degenerate loop: the same `COPY_SPAN_WORDS` words twice in one answer, or a template filled again and
    again ("it's got some of the best drumming ever made!!! it's got some of the best vocals ever made!!!"), which
    no 12 words repeat exactly: over `LOOP_SHARE` of its `LOOP_GRAM_WORDS`-word phrases repeat an earlier one."""
    words = _words(text)
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - COPY_SPAN_WORDS + 1):
        span = tuple(words[i : i + COPY_SPAN_WORDS])
        if span in seen:
            return "repeats itself"
        seen.add(span)
    grams = [tuple(words[i : i + LOOP_GRAM_WORDS]) for i in range(len(words) - LOOP_GRAM_WORDS + 1)]
    if len(grams) >= LOOP_MIN_GRAMS and 1 - len(set(grams)) / len(grams) > LOOP_SHARE:
        return f"repeats itself ({1 - len(set(grams)) / len(grams):.0%} of its {LOOP_GRAM_WORDS}-word phrases again)"
    return None


_FEATURE_LIST = re.compile(r"Definition:|Difference:|^\s*\d+\.\s*\[", re.MULTILINE)


def feature_list_problem(text: str) -> str | None:
    """A summary that re-lists the difference features in their prompt format instead of summarizing."""
    return "re-lists the difference features" if _FEATURE_LIST.search(text) else None


def reply_problem(text: str) -> str | None:
    return "a reply to the customer, not their review" if _REPLY.search(text) else None


def refusal_problem(text: str) -> str | None:
    return "a refusal, not an answer" if _REFUSAL.search(text) else None


def copy_problem(text: str, sources: list[str]) -> str | None:
    """Name it if most of `text` repeats the sources word for word (runs of `COPY_SPAN_WORDS` words, or
    the whole text if shorter): an echo. Reusing a phrase of the summary or a past review is allowed."""
    words = _words(text)
    span = min(COPY_SPAN_WORDS, len(words))
    if span < MIN_COPY_WORDS:
        return None
    source_spans = set()
    for source in sources:
        src = _words(source)
        source_spans.update(tuple(src[i : i + span]) for i in range(len(src) - span + 1))
    covered = set()
    for i in range(len(words) - span + 1):
        if tuple(words[i : i + span]) in source_spans:
            covered.update(range(i, i + span))
    share = len(covered) / len(words)
    return f"{share:.0%} of it copied verbatim from the prompt" if share >= COPY_SHARE else None


_CITATION = re.compile(r"\breviews?\s*#?\s*\d", re.IGNORECASE)
_CITED_ONLY = {"review", "reviews", "and"}


def skipped_level_problem(levels: list[tuple[str, str | None]]) -> str | None:
    """RRP's intervention: an answer whose reasoning leaves a level of the template (`levels`, in order) empty,
    or whose plan already is the review, skipped a level; the stage retries it."""
    for name, text in levels:
        if len(_words(text or "")) < MIN_WORDS:
            return f"skips a level of the template: {name} is empty"
    (_, plan), (_, review) = levels[-2:]
    if copy_problem(plan or "", [review or ""]):
        return "skips a level of the template: the plan is the review itself"
    return None


def uncited_problem(traits: str) -> str | None:
    """Traits that name no past review are not drawn from them (RRP's "retrieved history ignored"); traits that
    only name them ("Review 4, Review 3, Review 2, Review 1": the 1.5B model's answer to this retry in 7 of 21
    samples) say nothing of the user."""
    if not _CITATION.search(traits):
        return "the traits cite no past review"
    said = [w for w in _words(traits) if not w.isdigit() and w not in _CITED_ONLY]
    return None if len(said) >= MIN_WORDS else "the traits only list past reviews"
