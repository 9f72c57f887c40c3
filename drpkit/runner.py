"""Run a program over a split: concurrent samples, one JSON line per finished sample, resumable."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import dspy
from tqdm import tqdm

from drpkit.data.loading import ReviewData
from drpkit.data.tasks import ReviewTask, build_task
from drpkit.metrics import score
from drpkit.programs import DRP, DRPConfig

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
RUN_RECORD = "run.json"


@dataclass(frozen=True, kw_only=True)
class ProgramSettings:
    """The program that runs and optimizations share: the method's settings, its retrieval sizes, the
    adapter and each stage's LM (`StageLMs.describe()`)."""

    method: str = "drp"
    num_retrieved: int = 8
    num_compared: int = 8
    program: DRPConfig = field(default_factory=DRPConfig)
    adapter: str = "json"
    lms: dict[str, dict[str, Any]] = field(default_factory=dict)

    def program_fields(self) -> dict[str, Any]:
        """This object's ProgramSettings fields, for building the other settings from the same program."""
        return {f.name: getattr(self, f.name) for f in fields(ProgramSettings)}

    def record(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True, kw_only=True)
class RunSettings(ProgramSettings):
    """What defines a run's outputs; resuming into a folder made with other settings is refused."""

    data: str
    split: str = "test"
    limit: int | None = None
    program_state: str | None = None  # fingerprint of a compiled program's state (`drp optimize`); None: defaults


def build_tasks(data: ReviewData, settings: RunSettings) -> tuple[list[ReviewTask], list[dict[str, Any]]]:
    """Tasks for the split, and a failure row for every user who cannot be a task (e.g. no history)."""
    rows = data.rows.get(settings.split)
    if rows is None:
        raise ValueError(f"split {settings.split!r} is not in the data (have: {sorted(data.rows)})")
    rows = rows[: settings.limit] if settings.limit else rows
    tasks, unusable = [], []
    for row in rows:
        if not row.profile:
            unusable.append({"user_id": row.user_id, "status": "failed", "prediction": None,
                             "reference": row.data.text, "error": "the user has no past reviews"})
            continue
        tasks.append(build_task(row, data, settings.num_retrieved, settings.num_compared, settings.program.m))
    return tasks, unusable


class Progress:
    """Thread-safe counters behind the progress bar."""

    def __init__(self, total: int, initial: int):
        self.bar = tqdm(total=total, initial=initial, desc="samples", unit="sample", dynamic_ncols=True)
        self.failed = 0
        self.calls = 0
        self.tokens = 0
        self.lock = threading.Lock()

    def update(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.failed += row["status"] != "ok"
            for stage in (row.get("usage") or {}).values():
                self.calls += stage["calls"]
                self.tokens += stage["prompt_tokens"] + stage["completion_tokens"]
            self.bar.set_postfix(failed=self.failed, llm_calls=self.calls, tokens=self.tokens)
            self.bar.update(1)


def predict_one(program: DRP, task: ReviewTask) -> dict[str, Any]:
    """One sample's row: the prediction with every intermediate, or the recorded failure."""
    start = time.perf_counter()
    row: dict[str, Any] = {"user_id": task.user_id, "asin": task.item.asin, "reference": task.reference}
    try:
        prediction = program(task=task)
    except Exception as error:  # a dead server or a bug: recorded, and retried on the next run
        return row | {"status": "error", "prediction": None, "error": f"{type(error).__name__}: {error}",
                      "seconds": round(time.perf_counter() - start, 2)}
    failed = prediction.review is None
    return row | {
        "status": "failed" if failed else "ok",
        "error": f"{prediction.failures[-1]['stage']} gave no usable answer" if failed else None,
        "prediction": prediction.review,
        "summary": prediction.summary,
        "history": [review.asin for _, review in task.history],
        "comparisons": prediction.comparisons,
        "failures": prediction.failures,
        "retries": prediction.retries,
        "usage": prediction.usage,
        "seconds": round(time.perf_counter() - start, 2),
    }


def read_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The latest row per user from a predictions file (a retried sample appends a newer row)."""
    rows: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["user_id"]] = row
    return rows


def unfinished(tasks: list[ReviewTask], out: Path) -> list[ReviewTask]:
    """The tasks without a result in `out`, what a run into `out` computes: those never run and those that
    ended in an error (status "error": a dead server, say). A sample "failed" when the model gave no usable
    answer after every attempt: that is the method's result, and rerunning it would replay it from the cache."""
    done = {uid for uid, row in read_rows(out / PREDICTIONS).items() if row["status"] in ("ok", "failed")}
    return [task for task in tasks if task.user_id not in done]


def run(program: DRP, data: ReviewData, settings: RunSettings, out: Path, concurrency: int = 8) -> dict[str, Any]:
    """Predict every unfinished sample of the split into `out`, then score them all; returns the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out / RUN_RECORD, settings)
    tasks, unusable = build_tasks(data, settings)
    todo = unfinished(tasks, out)
    progress = Progress(total=len(tasks), initial=len(tasks) - len(todo))
    lock = threading.Lock()
    with open(out / PREDICTIONS, "a", encoding="utf-8") as sink:
        for row in unusable:
            sink.write(json.dumps(row) + "\n")

        def keep(row: dict[str, Any]) -> None:
            with lock:
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                sink.flush()
            progress.update(row)

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures, kept = [], set()
            try:
                for task in todo:
                    futures.append(pool.submit(predict_one, program, task))
                for future in as_completed(futures):
                    keep(future.result())
                    kept.add(future)
            except BaseException:  # Ctrl-C or SIGTERM: start no new sample, keep those in flight
                running = [f for f in futures if f not in kept and not f.cancel()]
                print(f"\nstopping: finishing the {sum(not f.done() for f in running)} samples in flight "
                      "(Ctrl-C again abandons them)",
                      file=sys.stderr)
                for future in as_completed(running):
                    if future.exception() is None:
                        keep(future.result())
                raise
    progress.bar.close()
    return write_metrics(out, [task.user_id for task in tasks] + [row["user_id"] for row in unusable])


def write_metrics(out: Path, user_ids: list[str]) -> dict[str, Any]:
    """Score the latest row of each sample; failed samples count as empty predictions and are reported."""
    rows = read_rows(out / PREDICTIONS)
    selected = [rows[uid] for uid in user_ids if uid in rows]
    scores = score([row["prediction"] or "" for row in selected], [row["reference"] for row in selected],
                   missing=sum(row["prediction"] is None for row in selected))
    usage: dict[str, dict[str, int]] = {}
    for row in selected:
        for stage, counts in (row.get("usage") or {}).items():
            totals = usage.setdefault(stage, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
            for key in totals:
                totals[key] += counts[key]
    metrics = scores.as_dict() | {
        "samples": len(selected),
        "failed": sum(row["status"] != "ok" for row in selected),
        "errors": sum(row["status"] == "error" for row in selected),  # not finished: rerun to retry them
        # each row keeps the time of the run that produced it, so a resumed run reports its own cost
        "seconds_per_sample": round(sum(row.get("seconds", 0) for row in selected) / max(len(selected), 1), 2),
        "usage_per_sample": {stage: {k: round(v / max(len(selected), 1), 1) for k, v in c.items()}
                             for stage, c in usage.items()},
    }
    (out / METRICS).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    """The settings that change results: not the sample limit or an optimizer's budget (more of either
    continues the run), not where the servers listen; an unset setting, or a program option at its default
    (one added since, say), equals one a record lacks."""
    lms = {stage: {k: v for k, v in spec.items() if k != "api_base"} for stage, spec in record["lms"].items()}
    defaults = asdict(DRPConfig())
    program = {k: v for k, v in record.get("program", {}).items() if k not in defaults or defaults[k] != v}
    return ({k: v for k, v in record.items() if k not in ("limit", "budget") and v is not None}
            | {"lms": lms, "program": program})


def check_settings(path: Path, settings: Any) -> None:
    """Write `settings.record()` to `path`, or refuse when the folder was made with other settings."""
    record = settings.record()
    if path.exists():
        previous = _identity(json.loads(path.read_text(encoding="utf-8")))
        if previous != _identity(record):
            changed = sorted(k for k, v in _identity(record).items() if previous.get(k) != v)
            raise ValueError(f"{path.parent} holds a run with other settings ({', '.join(changed)}); "
                             "use another output folder")
    else:
        path.write_text(json.dumps(record, indent=2), encoding="utf-8")
