"""Where a run's time goes: the program on N samples, then the exact LM requests it made, replayed raw.

    drp serve &                                  # VLLM_SERVER_DEV_MODE=1 lets each phase start cold
    python benchmarks/throughput.py --data ../shared/data/digital_music_2014 --split val --limit 8

1. The program runs the samples at `--concurrency` (a fresh DSPy cache: every call reaches the server) and
   its LM requests are recorded from the LMs' histories.
2. The same requests are sent straight to the server's chat endpoint, at concurrency 1 and at
   `--concurrency`: what the server alone needs for this work.

Each phase reads the server's Prometheus counters before and after: prompt and completion tokens, the share of
prompt tokens served by the prefix cache, prefill and decode rates (tokens per second of the requests' prefill
and decode time at concurrency 1; tokens per wall second otherwise), requests per second. The last line is the
program's wall time over the raw replay's at the same concurrency: what the program adds to the server's work
(its waits between dependent calls, DSPy, retries are part of the recorded requests). Prints a table and JSON.

Either engine may serve (`drp serve --engine llama.cpp`). llama.cpp counts neither requests (the benchmark counts
its own) nor why answers ended (the stages' table has the program's cuts), and its cache is not emptied between
phases: start a fresh server for a cold phase.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from drpkit.runner import CONCURRENCY
from drpkit.serving import ADAPTERS, PROMPT_ORDERS, server_engine

COUNTERS = {  # per engine: each measure, the Prometheus counters whose sum it is
    "vllm": {
        "prompt_tokens": ("vllm:prompt_tokens_total",),
        "cached_prompt_tokens": ("vllm:prefix_cache_hits_total",),
        "prefix_queries": ("vllm:prefix_cache_queries_total",),
        "completion_tokens": ("vllm:generation_tokens_total",),
        "prefill_seconds": ("vllm:request_prefill_time_seconds_sum",),
        "decode_seconds": ("vllm:request_decode_time_seconds_sum",),
        "requests": ("vllm:request_success_total",),
        # why answers ended, from the server: litellm reports vLLM's "repetition" to the program as "stop"
        "cut_at_max_tokens": ('vllm:request_success_total{*finished_reason="length"',),
        "cut_as_loop": ('vllm:request_success_total{*finished_reason="repetition"',),
    },
    "llama.cpp": {  # it counts computed and cached prompt tokens apart, and neither requests nor why answers ended
        "prompt_tokens": ("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total"),
        "cached_prompt_tokens": ("llamacpp:prompt_tokens_cached_total",),
        "prefix_queries": ("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total"),
        "completion_tokens": ("llamacpp:tokens_predicted_total",),
        "prefill_seconds": ("llamacpp:prompt_seconds_total",),
        "decode_seconds": ("llamacpp:tokens_predicted_seconds_total",),
    },
}
MEASURES = tuple(COUNTERS["vllm"])
SAMPLING = ("temperature", "top_p", "max_tokens")
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the server is local: never via a proxy


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--method", default="drp")
    parser.add_argument("--num-retrieved", type=int, default=8)
    parser.add_argument("--num-compared", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--prompt-order", choices=PROMPT_ORDERS, default=PROMPT_ORDERS[0])
    parser.add_argument("--adapter", choices=sorted(ADAPTERS), default="json")
    parser.add_argument("--api-base", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="drp-default")
    parser.add_argument("--replay", choices=["both", "parallel", "none"], default="both",
                        help="replay at concurrency 1 and --concurrency (both), at --concurrency only, or not at all")
    parser.add_argument("--requests", default=None, metavar="REQUESTS.jsonl",
                        help="replay the requests an earlier run recorded (its --out) instead of running the program: "
                             "the same work against another server or server setting; the program phase that "
                             "recorded them (phases.json beside it) is reported with the replay")
    parser.add_argument("--out", default=None, help="folder for the run and requests.jsonl (default: a temporary one)")
    return parser.parse_args()


def _server_root(api_base: str) -> str:
    return re.sub(r"/v1/?$", "", api_base.rstrip("/"))


def counters(api_base: str) -> dict[str, float]:
    """The server's counters, summed over their labels (a measure its engine does not count stays 0)."""
    with _LOCAL.open(_server_root(api_base) + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values, engine = dict.fromkeys(MEASURES, 0.0), COUNTERS[server_engine(api_base)]
    for line in text.splitlines():
        for key, patterns in engine.items():
            for pattern in patterns:
                name, _, label = pattern.partition("{*")
                if (line.startswith(name + "{") or line.startswith(name + " ")) and label in line:
                    values[key] += float(line.rsplit(" ", 1)[1])
    return values


def reset_prefix_cache(api_base: str) -> bool:
    """Empty the server's prefix cache (vLLM answers this in dev mode only); whether it did."""
    request = urllib.request.Request(_server_root(api_base) + "/reset_prefix_cache", method="POST", data=b"")
    try:
        with _LOCAL.open(request, timeout=30):
            return True
    except urllib.error.URLError:
        return False


def measured(api_base: str, work: Callable[[], int]) -> dict[str, Any]:
    """`work`'s wall time and what the server counted meanwhile; `work` returns how many requests it made (llama.cpp
    counts none)."""
    reset = reset_prefix_cache(api_base)
    before, start = counters(api_base), time.perf_counter()
    made = work()
    wall = time.perf_counter() - start
    after = counters(api_base)
    delta = {key: after[key] - before[key] for key in MEASURES}
    delta["requests"] = delta["requests"] or made
    computed = delta["prompt_tokens"] - delta["cached_prompt_tokens"]
    return delta | {
        "wall_seconds": round(wall, 1),
        "cold_start": reset,
        "prefix_hit_rate": round(delta["cached_prompt_tokens"] / max(delta["prefix_queries"], 1), 3),
        "prefill_tokens_per_second": round(computed / max(delta["prefill_seconds"], 1e-9), 1),
        "decode_tokens_per_second": round(delta["completion_tokens"] / max(delta["decode_seconds"], 1e-9), 1),
        "computed_prompt_tokens_per_wall_second": round(computed / wall, 1),
        "completion_tokens_per_wall_second": round(delta["completion_tokens"] / wall, 1),
        "requests_per_second": round(delta["requests"] / wall, 3),
    }


def run_program(args: argparse.Namespace, out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the program on the samples; return its LM requests (in order) and the run's metrics."""
    import dspy

    from drpkit.data import SAMPLE_DIR, load_reviews
    from drpkit.programs import DRP, STAGES, DRPConfig
    from drpkit.runner import RunSettings, run
    from drpkit.serving import LMSpec, StageLMs, configure_dspy

    configure_dspy(args.adapter, args.prompt_order)
    dspy.configure(max_history_size=1_000_000)
    data = load_reviews(SAMPLE_DIR if args.data == "sample" else args.data)
    lms = StageLMs(LMSpec(model=args.model, api_base=args.api_base))
    settings = RunSettings.for_method(args.method, DRPConfig(), args.num_retrieved, args.num_compared, lms,
                                      data=args.data, split=args.split, limit=args.limit,
                                      adapter=args.adapter, prompt_order=args.prompt_order)
    program = DRP(settings.program)
    built = lms.build(STAGES)
    program.set_stage_lms(built)
    metrics = run(program, data, settings, out / "run", concurrency=args.concurrency)
    # a stage's prompt holds the first line of its instruction (adapters re-indent the lines after it)
    instructions = {name: stage.predictors()[0].signature.instructions.strip().splitlines()[0]
                    for name, stage in program.stages().items()}
    requests = []
    for lm in {id(lm): lm for lm in built.values()}.values():
        for entry in lm.history:
            kwargs = {**lm.kwargs, **entry["kwargs"]}
            prompt = "\n".join(str(message["content"]) for message in entry["messages"])
            choice = entry["response"].choices[0]
            requests.append({
                "timestamp": entry["timestamp"], "messages": entry["messages"],
                **{key: kwargs[key] for key in SAMPLING if key in kwargs},
                "extra_body": kwargs.get("extra_body", {}),  # vLLM's repetition detection, as the program sent it
                "stage": next((name for name, text in instructions.items() if text in prompt), None),
                "completion_tokens": (entry["usage"] or {}).get("completion_tokens"),
                "finish_reason": getattr(choice, "finish_reason", None),
            })
    requests.sort(key=lambda request: request["timestamp"])
    return requests, metrics


def replay(args: argparse.Namespace, requests: list[dict[str, Any]], concurrency: int) -> int:
    def send(request: dict[str, Any]) -> None:
        body = {"model": args.model, "messages": request["messages"],
                **{key: request[key] for key in SAMPLING if key in request}, **request.get("extra_body", {})}
        http = urllib.request.Request(args.api_base.rstrip("/") + "/chat/completions",
                                      data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with _LOCAL.open(http, timeout=3600) as response:
            response.read()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(send, requests))
    return len(requests)


def main() -> None:
    args = _args()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out or scratch)
        out.mkdir(parents=True, exist_ok=True)
        os.environ["DRPKIT_CACHE"] = str(Path(scratch) / "cache")  # no LM answer from an earlier run
        phases: dict[str, dict[str, Any]] = {}
        requests: list[dict[str, Any]] = []
        metrics: dict[str, Any] = {}

        def program() -> int:
            nonlocal requests, metrics
            requests, metrics = run_program(args, out)
            return len(requests)

        def save() -> None:  # after every phase: a stopped benchmark keeps what it measured
            (out / "phases.json").write_text(json.dumps({"phases": phases, "metrics": metrics}, indent=2))

        if args.requests:
            requests = [json.loads(line) for line in Path(args.requests).read_text().splitlines() if line.strip()]
            earlier = Path(args.requests).with_name("phases.json")
            if earlier.exists():
                recorded = json.loads(earlier.read_text())
                metrics = recorded["metrics"]
                phases |= {name: phase for name, phase in recorded["phases"].items() if name.startswith("program")}
        else:
            print(f"program: {args.limit} samples of {args.data} ({args.split}), {args.method}, "
                  f"concurrency {args.concurrency}", file=sys.stderr)
            phases[f"program, concurrency {args.concurrency}"] = measured(args.api_base, program)
            with open(out / "requests.jsonl", "w", encoding="utf-8") as sink:
                for request in requests:
                    sink.write(json.dumps(request) + "\n")
            save()
        for concurrency in {"both": [1, args.concurrency], "parallel": [args.concurrency], "none": []}[args.replay]:
            print(f"replay: {len(requests)} requests at concurrency {concurrency}", file=sys.stderr)
            phases[f"replay, concurrency {concurrency}"] = measured(
                args.api_base, lambda c=concurrency: replay(args, requests, c))
            save()

    ran = phases.get(f"program, concurrency {args.concurrency}")
    replayed = phases.get(f"replay, concurrency {args.concurrency}")
    by_stage: dict[str, dict[str, Any]] = {}
    for request in requests:
        stage = by_stage.setdefault(str(request["stage"]), {"calls": 0, "completion_tokens": [], "cut_at_max_tokens": 0})
        stage["calls"] += 1
        stage["completion_tokens"].append(request["completion_tokens"] or 0)
        stage["cut_at_max_tokens"] += request["finish_reason"] == "length"  # loops: the phases' cut_as_loop
    for stage in by_stage.values():
        tokens = sorted(stage.pop("completion_tokens"))
        stage |= {"completion_tokens_median": tokens[len(tokens) // 2], "completion_tokens_max": tokens[-1],
                  "completion_tokens_total": sum(tokens)}
    report = {
        "settings": vars(args),
        "samples": metrics.get("samples"), "failed": metrics.get("failed"), "requests": len(requests),
        "samples_per_hour": round(metrics["samples"] / ran["wall_seconds"] * 3600, 1) if ran else None,
        "quality": {key: metrics[key] for key in ("bleu", "rougeL", "meteor", "length_ratio")} if ran else None,
        "program_over_replay": round(ran["wall_seconds"] / replayed["wall_seconds"], 2) if ran and replayed else None,
        "stages": by_stage,
        "phases": phases,
    }
    columns = ("wall_seconds", "requests_per_second", "prompt_tokens", "prefix_hit_rate", "completion_tokens",
               "cut_at_max_tokens", "cut_as_loop",
               "prefill_tokens_per_second", "decode_tokens_per_second", "computed_prompt_tokens_per_wall_second",
               "completion_tokens_per_wall_second")
    print("| phase | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, phase in phases.items():
        print(f"| {name} | " + " | ".join(f"{phase[c]:g}" for c in columns) + " |")
    print(f"\nsamples per hour {report['samples_per_hour']}; program wall over raw replay "
          f"{report['program_over_replay']} (goal <= 1.10); cold phases: "
          f"{all(p['cold_start'] for p in phases.values())}")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
