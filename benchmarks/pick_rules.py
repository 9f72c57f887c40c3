"""Which rule should pick Generate's review among its candidates (`--review-candidates`)? Each rule is scored on
the candidates a run recorded in its rows (corpus BLEU, length ratio, ROUGE-L), against a baseline run on the same
samples (paired bootstrap differences). Only the oracle rule reads the reference: it is the headroom, not a method.
A difference-aware rule reads, for a DRP run, the representatives' reviews of the compared items that Step 0 picked
(the row's `comparisons`, looked up in the data); for a run without compared items it is the similarity rule.

    python benchmarks/pick_rules.py runs/rag-doc-candidates/predictions.jsonl \
        --baseline runs/rag-doc/predictions.jsonl --data ../shared/data/digital_music_2014 --split val

A run made before rows recorded their candidates gets them by running its `drp run` command again into a new
folder: the answers come from DSPy's cache, so no LM work is done (a server must answer all the same). A run made
before a check was added is scored as if it had the check with `--recheck`: a candidate today's checks reject
against the past reviews shown counts as unusable (the run's own pick stays as it was).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import sacrebleu

from drpkit.data import load_reviews
from drpkit.metrics.bleu import BLEU
from drpkit.metrics.paired import PairedBootstrap
from drpkit.metrics.rouge import ROUGE
from drpkit.programs.checks import review_problem
from drpkit.programs.stages import candidate_score, review_words
from drpkit.runner import read_rows

Rule = Callable[[list[dict], list, list, str], str]
RULES: dict[str, Rule] = {
    "the run's pick": lambda candidates, history, others, reference: next(
        c["review"] for c in candidates if c["picked"]),
    "nearest the median length": lambda candidates, history, others, reference: max(
        _usable(candidates), key=candidate_score("length", history)),
    "longest": lambda candidates, history, others, reference: max(_usable(candidates), key=review_words),
    "most like the past reviews shown": lambda candidates, history, others, reference: max(
        _usable(candidates), key=candidate_score("similarity", history)),
    "like the user's, unlike the others'": lambda candidates, history, others, reference: max(
        _usable(candidates), key=_contrast(history, others)),
    "oracle (reference)": lambda candidates, history, others, reference: max(
        _usable(candidates), key=lambda text: sacrebleu.sentence_bleu(text, [reference]).score),
}
"""`others`: the representatives' reviews of the sample's compared items (DRP's Step 0) with their items, none for
other methods."""


def _contrast(history: list, others: list) -> Callable[[str], float]:
    """Difference-aware: the similarity rule's score against the user's past reviews shown minus the same against
    the representatives' reviews of the compared items (words the user uses and the others do not); the similarity
    rule alone without any."""
    like_user = candidate_score("similarity", history)
    if not others:
        return like_user
    like_others = candidate_score("similarity", others)
    return lambda text: like_user(text) - like_others(text)


def _usable(candidates: list[dict]) -> list[str]:
    """The candidates that passed the checks, or the first (what the run then kept, for its retry to reject)."""
    return [c["review"] for c in candidates if c["usable"]] or [candidates[0]["review"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="predictions.jsonl of a run made with --review-candidates")
    parser.add_argument("--baseline", type=Path, required=True, help="predictions.jsonl of the run to compare with")
    parser.add_argument("--data", required=True, help="the runs' data (for the past reviews each sample was shown)")
    parser.add_argument("--split", required=True)
    parser.add_argument("--recheck", action="store_true",
                        help="candidates today's checks reject count as unusable (a run made before a check)")
    args = parser.parse_args()
    # in a fixed order (a run writes rows as they finish): the bootstrap's resamples then repeat
    rows = sorted((row for row in read_rows(args.run).values() if row.status == "ok"),
                  key=lambda row: (row.user_id, row.asin, row.timestamp))
    if not rows or not all(row.candidates for row in rows):
        raise SystemExit(f"{args.run}: rows without recorded candidates (run its command again into a new folder)")
    baseline = read_rows(args.baseline)
    data = load_reviews(args.data)  # every split: the representatives' reviews are any split's
    reviews = {(row.user_id, review.asin): review for row in data.rows[args.split] for review in row.profile}
    picks: dict[str, list[str]] = {"baseline": [baseline[row.key].prediction or "" for row in rows]}
    shown = [_shown(row, reviews, data.items) for row in rows]
    candidates = [_rechecked(row.candidates, history) if args.recheck else row.candidates
                  for row, history in zip(rows, shown)]
    if args.recheck:
        rejected = sum(c["usable"] for row in rows for c in row.candidates) - sum(c["usable"] for cs in candidates
                                                                                   for c in cs)
        print(f"--recheck: {rejected} candidates the run kept as usable are rejected by today's checks")
    others = [_representatives(row, data) for row in rows]
    for name, rule in RULES.items():
        picks[name] = [rule(cs, history, theirs, row.reference)
                       for row, cs, history, theirs in zip(rows, candidates, shown, others)]
    references = [row.reference for row in rows]
    bleu_metric, rouge_metric = BLEU(), ROUGE()
    bootstrap = PairedBootstrap(metrics=[BLEU(), ROUGE()])
    print(f"{len(rows)} samples")
    for name, predictions in picks.items():
        bleu = bleu_metric.corpus_score(predictions, references)
        rouge = rouge_metric.corpus_score(predictions, references)
        line = f"{name:36s} BLEU {bleu['bleu']:5.2f}  ratio {bleu['length_ratio']:.2f}  ROUGE-L {rouge['rougeL']:.4f}"
        if name != "baseline":
            d = bootstrap.compare(picks["baseline"], predictions, references)
            line += (f"  vs baseline BLEU {d['bleu'].delta:+.2f} [{d['bleu'].low:+.2f}, {d['bleu'].high:+.2f}]"
                     f"  ROUGE-L {d['rougeL'].delta:+.4f} [{d['rougeL'].low:+.4f}, {d['rougeL'].high:+.4f}]")
        print(line)
    print(f"bleu: {bleu_metric.signature()}\nrouge: {rouge_metric.signature()}\ndifferences: {bootstrap.signature()}")


def _rechecked(candidates: list[dict], history: list) -> list[dict]:
    """`candidates`, usable only if today's checks pass them too (against the past reviews shown: the run's prompt
    had more, so a copy of the item's description, say, is not caught again, but nothing is rejected wrongly)."""
    texts = [review.text for _, review in history]
    return [c | {"usable": c["usable"] and review_problem(c["review"], texts) is None} for c in candidates]


def _representatives(row, data) -> list:
    """The reviews of the row's compared items by the representatives Step 0 picked, as (item, review) pairs like
    the history's (DRP's; none for rag)."""
    return [(data.items[comparison["asin"]], review) for comparison in row.comparisons
            for user_id, review in data.item_reviews(comparison["asin"])
            if user_id in comparison["representatives"]]


def _shown(row, reviews: dict, items: dict) -> list:
    """The past reviews the sample's Generate was shown (the row's history: their items' asins)."""
    return [(items[asin], reviews[(row.user_id, asin)]) for asin in row.history]


if __name__ == "__main__":
    main()
