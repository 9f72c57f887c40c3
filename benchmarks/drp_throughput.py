"""Measure DRP on a local vLLM server: samples per minute, LLM calls and tokens per sample by stage.

    python benchmarks/drp_throughput.py --data sample --limit 8 --concurrency 8 [--num-compared 2]

Needs a running server (`drp serve`), so that its start is not timed; LM answers are not taken from
DSPy's cache (a fresh cache folder). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from drpkit.cli import main as drp


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--method", default="drp")
    parser.add_argument("--num-retrieved", type=int, default=8)
    parser.add_argument("--num-compared", type=int, default=8)
    parser.add_argument("--api-base", default="http://127.0.0.1:8000/v1")
    return parser.parse_args()


def main() -> None:
    args = _args()
    with tempfile.TemporaryDirectory() as out:  # nothing resumed, no cached LM answers
        os.environ["DRPKIT_CACHE"] = out
        start = time.perf_counter()
        drp(["run", "--data", args.data, "--split", args.split, "--limit", str(args.limit), "--out", out,
             "--concurrency", str(args.concurrency), "--method", args.method,
             "--num-retrieved", str(args.num_retrieved), "--num-compared", str(args.num_compared),
             "--api-base", args.api_base, "--serve", "never"])
        seconds = time.perf_counter() - start
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    print(json.dumps({
        "settings": vars(args),
        "wall_seconds": round(seconds, 1),
        "samples_per_minute": round(metrics["samples"] / seconds * 60, 2),
        "failed": metrics["failed"],
        "usage_per_sample": metrics["usage_per_sample"],
        "bleu": metrics["bleu"], "rougeL": metrics["rougeL"],
    }, indent=2))


if __name__ == "__main__":
    main()
