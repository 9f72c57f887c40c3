"""Would choosing among several sampled reviews by length bring them nearer the user's? A probe for issue 10's
length criterion, before any change to the program: runs of the same method on the same samples, the first at
temperature 0, the others sampled (each with its own DSPy cache, or DSPy answers them from the first's), and
for each sample the review a rule picks, from the user's past reviews only, never the reference:

- `longest`: the longest of the candidates;
- `nearest-median`: the one whose length is nearest the median of the past reviews Generate was shown.

    drp serve &
    A="--method rag --data ../shared/data/digital_music_2014 --split train --limit 16 --num-retrieved 4"
    drp run $A --out runs/pick/t0
    DRPKIT_CACHE=runs/pick/cache1 drp run $A --temperature 0.7 --out runs/pick/t07-1   # needs the models there:
    DRPKIT_CACHE=runs/pick/cache2 drp run $A --temperature 0.7 --out runs/pick/t07-2   # link `models`, `nltk_data`
    python benchmarks/pick_by_length.py runs/pick/t0 runs/pick/t07-1 runs/pick/t07-2 \
        --data ../shared/data/digital_music_2014 --split train

Scores each rule's picks (corpus BLEU, length ratio) and its paired bootstrap difference against the first run,
on the samples every run wrote a review for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drpkit.data import load_reviews
from drpkit.metrics.bleu import BLEU
from drpkit.metrics.paired import PairedBootstrap
from drpkit.programs.style import Style
from drpkit.runner import PREDICTIONS, read_rows


def words(text: str) -> float:
    """A text's length as the program measures a user's (`Style`): words, not BLEU's tokens."""
    style = Style.measure([text])
    return style.words if style else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders; the first is the baseline (temperature 0)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    if len(args.runs) < 2:
        sys.exit("error: give the baseline run and at least one sampled run")
    runs = []
    for folder in args.runs:
        path = folder / PREDICTIONS
        if not path.is_file():
            sys.exit(f"error: no {PREDICTIONS} in {folder}")
        runs.append({key: row for key, row in read_rows(path).items() if row.status == "ok"})
    keys = [key for key in runs[0] if all(key in run for run in runs[1:])]
    if not keys:
        sys.exit("error: no sample has a review in every run")
    data = load_reviews(args.data, splits=(args.split,))
    profiles = {(r.user_id, r.data.asin): {review.asin: review.text for review in r.profile}
                for r in data.rows[args.split]}
    median_shown = {}  # the median length of the past reviews Generate was shown
    for key in keys:
        profile = profiles.get((key.user_id, key.asin), {})
        style = Style.measure([profile[asin] for asin in runs[0][key].history if asin in profile])
        if style is None:
            sys.exit(f"error: the past reviews shown for {key.user_id}/{key.asin} are not in {args.data} "
                     f"({args.split}): are the runs of that split?")
        median_shown[key] = style.words

    candidates = {key: [run[key].prediction or "" for run in runs] for key in keys}
    picks = {
        "first run": [candidates[key][0] for key in keys],
        "longest": [max(candidates[key], key=words) for key in keys],
        "nearest-median": [min(candidates[key], key=lambda text: abs(words(text) - median_shown[key]))
                           for key in keys],
    }
    references = [runs[0][key].reference for key in keys]
    bleu, bootstrap = BLEU(), PairedBootstrap(metrics=[BLEU()])
    print(f"{len(keys)} samples with a review in all {len(runs)} runs; {len(runs)} candidates each")
    for name, predictions in picks.items():
        scores = bleu.corpus_score(predictions, references)
        line = f"{name:15s} BLEU {scores['bleu']:5.2f}  length ratio {scores['length_ratio']:.2f}"
        if name != "first run":
            d = bootstrap.compare(picks["first run"], predictions, references)["bleu"]
            line += f"  vs first run {d.delta:+.2f} [{d.low:+.2f}, {d.high:+.2f}]{' *' if d.significant else ''}"
        print(line)
    print(f"bleu: {bleu.signature()}\ndifferences: {bootstrap.signature()} (*: significant)")


if __name__ == "__main__":
    main()
