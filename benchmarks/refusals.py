"""Which way of asking makes the model refuse to write a review? `non-p`'s Generate (no past reviews) asked in
several framings, one first answer each at temperature 0, classified by the program's own checks (a refusal, a
reply to the customer), counted by framing and by the review's rating.

    drp serve &
    python benchmarks/refusals.py --data ../shared/data/digital_music_2014 --split train --limit 80

Framings: `program` (the messages `drp run --method non-p --adapter text` sends), `plain` (the plain prompt of
`benchmarks/plain_prompt.py`), `lead` (the program's, its user turn opened by the request with the fields as
"your rating", "your review's title"), `honest` (the program's, its system message saying that critical reviews
help), `opened` (the program's, its answer already opened with the review's title as a first line, which the
model continues as the document framing's entries are), `entry` (the program's with `--open-answer`: its answer
begun as a review page's entry, the rating and the review's title, then "Review:"), and any of them with
`+banned` (vLLM's `bad_words`: the refusal and reply openers may not be written).
Only the opening of an answer is asked for (`--max-tokens`): refusals and replies come first; with several hundred
tokens the median length of the answers that are reviews says what a framing does to length too. Reads no target
review; sends each framing the same samples.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dspy
from plain_prompt import complete
from plain_prompt import messages as plain_messages

from drpkit.data import SAMPLE_DIR, load_reviews
from drpkit.data.schema import Item, UserRow
from drpkit.programs.checks import refusal_problem, reply_problem, review_problem
from drpkit.programs.formatting import format_item
from drpkit.programs.stages import Generate
from drpkit.serving.adapters import ADAPTERS, ContinuedAdapter
from drpkit.signatures.generate import GenerateReview

BANNED = ["I'm sorry, but", "I am sorry, but", "I'm sorry, I", "I can't assist", "I cannot assist", "As an AI",
          "As an artificial intelligence", "language model", "I'm glad you", "I'm so glad you", "I'm sorry to hear",
          "Thank you for sharing"]
"""The openers of the refusals and replies seen in the program's first answers (`+banned`)."""
FRAMINGS = ("program", "plain", "lead", "honest", "opened", "entry")


def program_messages(row: UserRow, item: Item, open_answer: bool = False) -> list[dict[str, str]]:
    """As `non-p` asks: Generate's signature without the inputs it lacks (past reviews, profile summary), with its
    answer begun as `--open-answer` begins it."""
    signature = GenerateReview.delete("past_reviews").delete("profile_summary")
    inputs = {"item": format_item(item), "rating": row.data.rating, "review_title": row.data.title}
    adapter = ADAPTERS["text"]["inputs-first"]()
    if open_answer:  # Generate's own framing around the run's adapter
        with dspy.context(adapter=adapter):
            adapter = Generate(open_answer=True).framing()["adapter"]
    return adapter.format(signature, [], inputs)


def messages(framing: str, row: UserRow, item: Item) -> list[dict[str, str]]:
    if framing == "plain":
        return plain_messages(row, item)
    if framing == "entry":
        return program_messages(row, item, open_answer=True)
    system, user = program_messages(row, item)
    review = row.data
    if framing == "lead":
        user = {"role": "user", "content": (
            f"Write your review of this item.\n\nItem: {format_item(item)}\n\nYour rating: {review.rating:g} out of 5"
            f"\n\nYour review's title: {review.title}\n\n" + user["content"].rsplit("\n\n", 1)[-1])}
    if framing == "honest":  # the sentence goes before the fields' list, which the text adapter always writes
        instruction, fields = system["content"].split("\n\nEach request gives:")
        system = {"role": "system", "content": f"{instruction}\n\nHonest reviews, critical ones included, help other "
                                               f"customers.\n\nEach request gives:{fields}"}
    if framing == "opened":
        return [system, user, {"role": "assistant", "content": f"{review.title}\n\n"}]
    return [system, user]


def first_answer(args: argparse.Namespace, framing: str, row: UserRow, item: Item) -> str:
    name, _, banned = framing.partition("+")
    extra = ContinuedAdapter.CONTINUE if name in ("opened", "entry") else {}
    return complete(args.api_base, args.model, messages(name, row, item), args.max_tokens, 0.0, args.timeout,
                    **extra, **({"bad_words": BANNED} if banned else {}))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-rating", type=float, default=5.0,
                        help="only the samples rated at most this (e.g. 3: the critical reviews the model refuses)")
    parser.add_argument("--framings", nargs="+", default=[*FRAMINGS, "program+banned"],
                        help=f"among {FRAMINGS}, each optionally with +banned")
    parser.add_argument("--api-base", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="drp-default")
    parser.add_argument("--max-tokens", type=int, default=60,
                        help="the answer's tokens: its opening (60) for refusals, several hundred for its length too")
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=None, help="a JSON file for every answer, to read them")
    args = parser.parse_args()
    unknown = [f for f in args.framings if f.partition("+")[0] not in FRAMINGS or f.partition("+")[2] not in ("", "banned")]
    if unknown:
        sys.exit(f"framings {unknown}: choose among {FRAMINGS}, each optionally with +banned")

    data = load_reviews(SAMPLE_DIR if args.data == "sample" else args.data)
    if args.split not in data.rows:
        sys.exit(f"split {args.split!r} is not in the data (have: {sorted(data.rows)})")
    rows = [row for row in data.rows[args.split] if row.data.rating <= args.max_rating][: args.limit]
    jobs = [(framing, row, data.items.get(row.data.asin) or Item(asin=row.data.asin, title=""))
            for row in rows for framing in args.framings]
    try:
        with ThreadPoolExecutor(args.concurrency) as pool:
            answers = list(pool.map(lambda job: first_answer(args, *job), jobs))
    except OSError as error:  # nothing is kept: the answers are cheap to ask again
        sys.exit(f"the server at {args.api_base} did not answer ({error}); is `drp serve` running?")

    kinds: dict[str, Counter] = defaultdict(Counter)
    refused_by_rating: dict[str, Counter] = defaultdict(Counter)
    words: dict[str, list[int]] = defaultdict(list)
    records = []
    for (framing, row, item), answer in zip(jobs, answers):
        kind = ("refusal" if refusal_problem(answer) else "reply" if reply_problem(answer)
                else "unusable" if review_problem(answer, [format_item(item)]) else "review")
        kinds[framing][kind] += 1
        refused_by_rating[framing][row.data.rating] += kind == "refusal"
        if kind == "review":
            words[framing].append(len(answer.split()))
        records.append({"framing": framing, "user_id": row.user_id, "asin": row.data.asin,
                        "rating": row.data.rating, "kind": kind, "answer": answer})
    ratings = Counter(row.data.rating for row in rows)
    print(f"{len(rows)} samples of {args.data} ({args.split}); ratings {dict(sorted(ratings.items()))}")
    print("| framing | refusals | replies | other unusable (a loop, a copy) | refusals by rating "
          "| reviews' median words |\n|---|---:|---:|---:|---|---:|")
    for framing in args.framings:
        by_rating = ", ".join(f"{r:g}: {refused_by_rating[framing][r]}/{n}" for r, n in sorted(ratings.items()))
        median = statistics.median(words[framing] or [0])
        print(f"| {framing} | {kinds[framing]['refusal']} ({kinds[framing]['refusal'] / len(rows):.0%}) "
              f"| {kinds[framing]['reply']} | {kinds[framing]['unusable']} | {by_rating} | {median:g} |")
    if args.out:
        args.out.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
