"""Which rule should pick Generate's review among its candidates (`--review-candidates`)? A replay of a run made
with candidates: the same `drp run` command again, its answers from DSPy's cache (no LM work; a server must answer
all the same), with every candidate of every sample recorded, then each rule's picks scored against a baseline run
on the same samples (corpus BLEU, length ratio, ROUGE-L, paired bootstrap differences). Only the oracle rule reads
the reference: it is the headroom, not a method.

    drp serve &
    python benchmarks/pick_rules.py --baseline runs/rag-doc-f32/predictions.jsonl -- \
        --method rag --data ../shared/data/digital_music_2014 --split val --limit 40 --num-retrieved 4 \
        --num-compared 2 --review-candidates 4 --concurrency 8 --out runs/pick-rules-replay --serve never

The replay's `nearest-median` row must equal the run's scores: if it does not, the replay missed the cache.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import dspy
import sacrebleu
from rouge_score import rouge_scorer

import drpkit.programs.stages as stages
from drpkit.cli import main as drp
from drpkit.data import load_reviews
from drpkit.data.tasks import build_task
from drpkit.metrics.bleu import BLEU
from drpkit.metrics.paired import PairedBootstrap
from drpkit.metrics.rouge import ROUGE
from drpkit.programs.checks import commentary_start
from drpkit.programs.formatting import format_item
from drpkit.runner import PREDICTIONS, read_rows

_SCORER = rouge_scorer.RougeScorer(["rouge1"])


def recording(records: dict, original=stages._nearest_length):
    """`stages._nearest_length`, recording each sample's candidates (both requests' answers) and whether each
    passed the checks, under the sample's review title and item."""
    def wrapped(predict, candidates, words, usable):
        seen: list[dspy.Prediction] = []

        def recorded(**inputs):
            seen.append(predict(**inputs))
            return seen[-1]

        inner = original(recorded, candidates, words, usable)

        def nearest(config=None, **inputs):
            seen.clear()
            picked = inner(config=config, **inputs)
            answers = [seen[0].review, *(seen[1].completions.review if len(seen) > 1 else [])]
            records[(inputs["item"], inputs["review_title"])] = {
                "words": words, "candidates": [(a, usable(dspy.Prediction(review=a)) is None) for a in answers]}
            return picked
        return nearest
    return wrapped


def similarity(text: str, past: str) -> float:
    return _SCORER.score(past, text)["rouge1"].fmeasure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="predictions.jsonl of the run to compare with")
    parser.add_argument("run", nargs=argparse.REMAINDER, help="after --: the `drp run` options of the run to replay")
    args = parser.parse_args()
    run = [a for a in args.run if a != "--"]
    records: dict = {}
    stages._nearest_length = recording(records)
    try:
        drp(["run", *run])
    except SystemExit as stop:
        if stop.code:
            raise
    out = Path(run[run.index("--out") + 1])
    # in a fixed order (the replay writes rows as they finish): the bootstrap's resamples then repeat
    rows = sorted((row for row in read_rows(out / PREDICTIONS).values() if row.status == "ok"),
                  key=lambda row: (row.user_id, row.asin, row.timestamp))
    baseline = read_rows(args.baseline)
    data_path, split = run[run.index("--data") + 1], run[run.index("--split") + 1]
    shown = int(run[run.index("--num-retrieved") + 1]) if "--num-retrieved" in run else 8  # drp run's default
    data = load_reviews(data_path, splits=(split,))
    tasks = {(t.user_id, t.item.asin, t.target.timestamp): t
             for t in (build_task(r, data, shown, 0, 4) for r in data.rows[split])}
    picks: dict[str, list[str]] = {"baseline": [], "nearest-median (the program's)": [], "longest": [],
                                   "most like the past reviews shown": [], "oracle (reference)": []}
    references = []
    for row in rows:
        key = (row.user_id, row.asin, row.timestamp)
        task = tasks[key]
        record = records[(format_item(task.item), task.target.title)]
        usable = [text for text, ok in record["candidates"] if ok] or [record["candidates"][0][0]]
        usable = [text[:commentary_start(text)].rstrip() for text in usable]
        past = " ".join(review.text for _, review in row_history(task, row))
        references.append(row.reference)
        picks["baseline"].append(baseline[key].prediction or "")
        picks["nearest-median (the program's)"].append(
            min(usable, key=lambda t: abs(stages.review_words(t) - record["words"])))
        picks["longest"].append(max(usable, key=stages.review_words))
        picks["most like the past reviews shown"].append(max(usable, key=lambda t: similarity(t, past)))
        picks["oracle (reference)"].append(max(usable, key=lambda t: sacrebleu.sentence_bleu(t, [row.reference]).score))
    bootstrap = PairedBootstrap(metrics=[BLEU(), ROUGE()])
    print(f"{len(rows)} samples")
    for name, predictions in picks.items():
        bleu, rouge = BLEU().corpus_score(predictions, references), ROUGE().corpus_score(predictions, references)
        line = f"{name:34s} BLEU {bleu['bleu']:5.2f}  ratio {bleu['length_ratio']:.2f}  ROUGE-L {rouge['rougeL']:.4f}"
        if name != "baseline":
            d = bootstrap.compare(picks["baseline"], predictions, references)
            line += (f"  vs baseline BLEU {d['bleu'].delta:+.2f} [{d['bleu'].low:+.2f}, {d['bleu'].high:+.2f}]"
                     f"  ROUGE-L {d['rougeL'].delta:+.4f} [{d['rougeL'].low:+.4f}, {d['rougeL'].high:+.4f}]")
        print(line)
    print(f"bleu: {BLEU().signature()}\nrouge: {ROUGE().signature()}\ndifferences: {bootstrap.signature()}")


def row_history(task, row):
    """The past reviews the sample's Generate was shown (the row's history), in the task's retrieval."""
    shown = set(row.history)
    return [(item, review) for item, review in task.history if review.asin in shown]


if __name__ == "__main__":
    main()
