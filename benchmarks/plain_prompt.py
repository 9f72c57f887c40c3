"""The yardstick for "the program's way of asking costs nothing": a plain, hand-written, non-personalized prompt
(one system and one user message, no DSPy adapter, no personal context) sent raw to the same server.

    drp serve &
    python benchmarks/plain_prompt.py --data ../shared/data/digital_music_2014 --split val --limit 40 \
        --out runs/plain-prompt
    drp evaluate runs/plain-prompt/predictions.jsonl                  # its scores, a row of the results
    drp evaluate runs/non-p/predictions.jsonl --baseline runs/plain-prompt/predictions.jsonl   # the program's
                                                                       # non-p against it, sample by sample

The prompt sees what `non-p` sees (the item, the rating and the review title), never the target review. Rows are
written as `drp run` writes them, so `drp evaluate --baseline` pairs them with a run's samples; rerunning into
the same folder resumes. Needs no DSPy or litellm: only the server's OpenAI-compatible chat endpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from drpkit.data import SAMPLE_DIR, load_reviews
from drpkit.data.schema import Item, UserRow
from drpkit.programs.formatting import format_item
from drpkit.runner import PREDICTIONS, JsonlWriter, PredictionRow, evaluate_file, read_rows

SYSTEM = "You are a customer who bought this item on Amazon and now writes a review of it."
USER = """Write your review of this item.

Item: {item}
Your rating: {rating:g} out of 5
Your review's title: {title}

Write the review text only, in the first person, as a customer would post it."""
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the server is local: never via a proxy


def messages(row: UserRow, item: Item) -> list[dict[str, str]]:
    review = row.data
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER.format(item=format_item(item), rating=review.rating, title=review.title)}]


def complete(api_base: str, model: str, messages: list[dict[str, str]], max_tokens: int, temperature: float,
             timeout: float, **extra: object) -> tuple[str, dict[str, int]]:
    """The answer to `messages` and its usage; `extra` goes into the request as it is (vLLM's sampling options)."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature, **extra}
    request = urllib.request.Request(api_base.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with _LOCAL.open(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    return answer["choices"][0]["message"]["content"].strip(), answer.get("usage", {})


def predict(args: argparse.Namespace, row: UserRow, item: Item) -> PredictionRow:
    identity = {"user_id": row.user_id, "asin": row.data.asin, "timestamp": row.data.timestamp,
                "reference": row.data.text}
    start = time.perf_counter()
    try:
        text, usage = complete(args.api_base, args.model, messages(row, item), args.max_tokens, args.temperature,
                               args.timeout)
    except (OSError, ValueError, KeyError) as error:  # a dead server or a malformed answer: retried on a rerun
        return PredictionRow(**identity, status="error", error=f"{type(error).__name__}: {error}")
    seconds = round(time.perf_counter() - start, 2)
    counts = {"calls": 1, "prompt_tokens": usage.get("prompt_tokens", 0),
              "completion_tokens": usage.get("completion_tokens", 0)}
    if not text:
        return PredictionRow(**identity, status="failed", error="empty answer", usage={"generate": counts},
                             seconds=seconds)
    return PredictionRow(**identity, status="ok", prediction=text, usage={"generate": counts}, seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the split's first N samples, before --limit (as `drp run --skip`)")
    parser.add_argument("--api-base", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="drp-default")
    parser.add_argument("--max-tokens", type=int, default=1024, help="as `drp run`'s default LM")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", required=True, help="folder for predictions.jsonl; rerunning into it resumes")
    args = parser.parse_args()

    data = load_reviews(SAMPLE_DIR if args.data == "sample" else args.data)
    if args.split not in data.rows:
        sys.exit(f"split {args.split!r} is not in the data (have: {sorted(data.rows)})")
    rows = data.rows[args.split][args.skip:]
    rows = rows[: args.limit] if args.limit else rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = {key for key, row in read_rows(out / PREDICTIONS).items() if row.finished}
    todo = [row for row in rows if (row.user_id, row.data.asin, row.data.timestamp) not in done]
    print(f"{len(rows) - len(todo)} of {len(rows)} samples already done", file=sys.stderr)
    with JsonlWriter(out / PREDICTIONS) as sink, ThreadPoolExecutor(args.concurrency) as pool:
        futures = [pool.submit(predict, args, row, data.items.get(row.data.asin) or Item(asin=row.data.asin, title=""))
                   for row in todo]
        for n, future in enumerate(as_completed(futures), 1):
            result = future.result()
            sink.append(result.record())
            print(f"\r{n}/{len(todo)} {result.status}", end="", file=sys.stderr)
    print(file=sys.stderr)
    scores = evaluate_file(out / PREDICTIONS)
    print(json.dumps(scores.as_dict(), indent=2))


if __name__ == "__main__":
    main()
