"""Run a program over a split: concurrent samples, one prediction row per finished sample, resumable."""

from __future__ import annotations

import contextlib
import contextvars
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dspy
from tqdm import tqdm

from ..data.loading import ReviewData
from ..data.tasks import ReviewTask, SampleKey
from ..metrics import Difference, PairedBootstrap, Scores, score
from ..programs import DRP, Usage
from .archive import archived, sync_record, sync_rows
from .errors import Abandoned, BadFile, UsageError, WriteFailed
from .files import folder_lock, write_json
from .jsonl import JsonlWriter, numbered_rows
from .rows import PREDICTIONS, PredictionRow, latest, read_rows
from .settings import RunSettings, check_settings

METRICS = "metrics.json"
CONCURRENCY = 8  # samples in flight (their compared items run in parallel too): the server batches their requests
RUN_RECORD = "run.json"


def build_tasks(data: ReviewData, settings: RunSettings) -> tuple[list[ReviewTask], list[PredictionRow]]:
    """Tasks for the split, and a failed row for every sample that cannot be a task (a user without history)."""
    rows = data.rows.get(settings.split)
    if rows is None:
        raise UsageError(f"split {settings.split!r} is not in the data (have: {sorted(data.rows)})")
    rows = rows[settings.skip:]
    rows = rows[: settings.limit] if settings.limit else rows
    tasks, unusable = [], []
    for row in rows:
        if row.profile:
            tasks.append(settings.task(row, data, settings.split))
        else:
            unusable.append(PredictionRow(user_id=row.user_id, asin=row.data.asin, timestamp=row.data.timestamp,
                                          reference=row.data.text, status="failed",
                                          error="the user has no past reviews"))
    return tasks, unusable


def sample_keys(tasks: list[ReviewTask], unusable: list[PredictionRow]) -> list[SampleKey]:
    return [task.key for task in tasks] + [row.key for row in unusable]


class Progress:
    """Thread-safe counters behind the progress bar; as a context manager, the bar is closed however the run
    ends, so that it is not redrawn after the run's last message."""

    def __init__(self, total: int, initial: int):
        self.bar = tqdm(total=total, initial=initial, desc="samples", unit="sample", dynamic_ncols=True)
        self.failed = 0
        self.usage = Usage()
        self.lock = threading.Lock()

    def update(self, row: PredictionRow) -> None:
        with self.lock:
            self.failed += row.status != "ok"
            for stage, counts in row.usage.items():
                self.usage.add(stage, counts)
            total = self.usage.total()
            self.bar.set_postfix(failed=self.failed, llm_calls=total["calls"],
                                 tokens=total["prompt_tokens"] + total["completion_tokens"])
            self.bar.update(1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def predict_one(program: DRP, task: ReviewTask) -> PredictionRow:
    """One sample's row: the prediction with every intermediate, or the recorded failure."""
    start = time.perf_counter()
    identity = {"user_id": task.user_id, "asin": task.item.asin, "timestamp": task.target.timestamp,
                "reference": task.reference}
    try:
        prediction = program(task=task)
    except Exception as error:  # a dead server or a bug: recorded, and retried on the next run
        return PredictionRow(**identity, status="error", error=f"{type(error).__name__}: {error}",
                             seconds=round(time.perf_counter() - start, 2))
    failed = prediction.review is None
    return PredictionRow(
        **identity,
        status="failed" if failed else "ok",
        error=f"{prediction.failures[-1]['stage']} gave no usable answer" if failed else None,
        prediction=prediction.review,
        summary=prediction.summary,
        history=[review.asin for _, review in task.history],
        comparisons=prediction.comparisons,
        user_profiles=prediction.user_profiles,
        reasoning=prediction.reasoning,
        candidates=prediction.candidates,
        failures=prediction.failures,
        retries=prediction.retries,
        usage=prediction.usage,
        seconds=round(time.perf_counter() - start, 2),
    )


def unfinished(tasks: list[ReviewTask], rows: dict[SampleKey, PredictionRow],
               retry_failed: bool = False) -> list[ReviewTask]:
    """The tasks without a result among a folder's `rows`, what a run into it computes: those never run and
    those that ended in an error (status "error": a dead server, say). A sample "failed" when the model gave no
    usable answer after every attempt: that is the method's result, and rerunning it would replay it, unless the
    checks of its answers have changed since (`retry_failed`: its answers come back from the cache, checked
    anew)."""
    def done(row: PredictionRow | None) -> bool:
        return row is not None and row.finished and not (retry_failed and row.status == "failed")

    return [task for task in tasks if not done(latest(rows, task.key))]


def run(program: DRP, data: ReviewData, settings: RunSettings, out: Path,
        concurrency: int = CONCURRENCY, archive: Path | None = None, retry_failed: bool = False) -> dict[str, Any]:
    """Predict every unfinished sample of the split into `out`, then score them all; returns the metrics. The
    program asks its LMs with the settings' adapter, in every worker thread (each runs in a copy of this
    context). The run records the program's prompts as its adapter writes them (`DRP.fingerprint`): a folder made
    with others is refused. The folder is locked while the run writes into it: a second run into it is refused.
    With an `archive` folder, `out` is first synced with it (`runner.archive`) and each new row goes to both.
    `retry_failed`: failed samples are computed again too (`unfinished`)."""
    with dspy.context(adapter=settings.make_adapter()), folder_lock(out):
        return _run(program, data, settings.of(program), out, concurrency, archive, retry_failed)


def references(tasks: list[ReviewTask], unusable: list[PredictionRow]) -> dict[SampleKey, str]:
    """Each sample's reference, as the data holds it: what an archive leaves out."""
    return {task.key: task.reference for task in tasks} | {row.key: row.reference for row in unusable}


def sync_archive(out: Path, archive: Path, refs: Mapping[SampleKey, str], name: str = PREDICTIONS) -> None:
    """Make the run folder `out` and its archive hold the same rows and run record (`runner.archive`); `refs`:
    the samples' references (`references`)."""
    sync_record(out / RUN_RECORD, archive / RUN_RECORD)
    sync_rows(out / name, archive / name, refs)


def _run(program: DRP, data: ReviewData, settings: RunSettings, out: Path, concurrency: int,
         archive: Path | None, retry_failed: bool) -> dict[str, Any]:
    tasks, unusable = build_tasks(data, settings)
    if archive is not None:  # before the settings are checked: restored rows come with their run record
        sync_archive(out, archive, references(tasks, unusable))
    check_settings(out / RUN_RECORD, settings)
    if archive is not None:
        sync_record(out / RUN_RECORD, archive / RUN_RECORD)
    written = read_rows(out / PREDICTIONS)
    todo = unfinished(tasks, written, retry_failed)
    # the per-user summaries of the samples not computed again serve the user's other samples: not made again
    again = {task.key for task in todo}
    program.users.restore(profile for row in written.values() if row.finished and row.key not in again
                          for profile in row.user_profiles)
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(Progress(total=len(tasks), initial=len(tasks) - len(todo)))
        sink = stack.enter_context(JsonlWriter(out / PREDICTIONS))
        kept_in = stack.enter_context(JsonlWriter(archive / PREDICTIONS)) if archive is not None else None

        def write(row: PredictionRow) -> None:
            sink.append(row.record())
            if kept_in is not None:
                kept_in.append(archived(row))

        for row in unusable:
            if latest(written, row.key) is None:
                write(row)

        def keep(row: PredictionRow) -> None:
            write(row)
            progress.update(row)

        pool, futures, kept, abandoned = ThreadPoolExecutor(max_workers=concurrency), [], set(), False
        try:
            for task in todo:
                futures.append(pool.submit(contextvars.copy_context().run, predict_one, program, task))
            for future in as_completed(futures):
                keep(future.result())
                kept.add(future)
        except BaseException as error:  # Ctrl-C, SIGTERM or a failed write: start no new sample
            running = [f for f in futures if f not in kept and not f.cancel()]
            in_flight = sum(not f.done() for f in running)
            if isinstance(error, WriteFailed):  # nothing more can be kept
                print(f"\nstopping: a row could not be written; waiting for the {in_flight} samples in flight "
                      "to end (unrecorded)", file=sys.stderr)
                raise
            print(f"\nstopping: finishing the {in_flight} samples in flight (Ctrl-C again abandons them)",
                  file=sys.stderr)
            try:
                for future in as_completed(running):
                    if future.exception() is None:
                        keep(future.result())
            except BaseException as again:  # Ctrl-C or SIGTERM again: wait for none of them
                abandoned = True
                code = again.code if isinstance(again, SystemExit) and isinstance(again.code, int) else 130
                raise Abandoned(sum(not f.done() for f in running), code) from again
            raise
        finally:
            pool.shutdown(wait=not abandoned, cancel_futures=True)
    return write_metrics(out, scored_rows(out, sample_keys(tasks, unusable)))


def scored_rows(out: Path, keys: list[SampleKey], name: str = PREDICTIONS) -> list[PredictionRow]:
    """The latest row of each of `keys` that a run folder holds, in the order of `keys`: what its metrics score."""
    rows = read_rows(out / name)
    return [row for key in keys if (row := latest(rows, key)) is not None]


def write_metrics(out: Path, rows: list[PredictionRow]) -> dict[str, Any]:
    """Score a run folder's rows (`scored_rows`) into its `metrics.json`; returns the metrics."""
    metrics = metrics_of(rows)
    write_json(out / METRICS, metrics)
    return metrics


def metrics_of(selected: list[PredictionRow]) -> dict[str, Any]:
    """Scores and costs of the rows; failed samples count as empty predictions and are reported."""
    n = len(selected)
    return score_rows(selected).as_dict() | {
        "samples": n,
        "failed": sum(row.status != "ok" for row in selected),
        "errors": sum(row.status == "error" for row in selected),  # not finished: rerun to retry them
        # each row keeps the time of the run that produced it, so a resumed run reports its own cost
        "seconds_per_sample": round(sum(row.seconds for row in selected) / max(n, 1), 2),
        "usage_per_sample": Usage.sum(row.usage for row in selected).per(n),
        "first_answers": {stage: first_answer_problems(selected, stage) for stage in ("summarize", "generate")},
    }


def first_answer_problems(rows: list[PredictionRow], stage: str) -> dict[str, Any]:
    """How the first answer of a stage called once per sample went: the samples where it answered (from the LM or
    from DSPy's cache: a run replayed from the cache has the same first answers), and what was wrong with the
    first answer, by kind (numbers masked), e.g. refusals among first reviews."""
    called = [row for row in rows if stage in row.usage]
    kinds: dict[str, int] = {}
    for row in called:
        first = next((retry["problem"] for retry in row.retries if retry["stage"] == stage), None)
        if first is not None:
            kind = re.sub(r"\d+", "N", first.split(":", 1)[0])
            kinds[kind] = kinds.get(kind, 0) + 1
    return {"samples": len(called), "problems": dict(sorted(kinds.items(), key=lambda item: -item[1]))}


def score_rows(rows: list[PredictionRow]) -> Scores:
    return score([row.prediction or "" for row in rows], [row.reference for row in rows],
                 missing=sum(row.prediction is None for row in rows))


Pair = tuple[SampleKey | None, str | None, str]  # (sample, prediction or None if it failed, reference)


def read_pairs(path: str | Path) -> list[Pair]:
    """The pairs a JSONL file holds: the latest row of each sample of a `predictions.jsonl`, or every row of any
    file of `{"prediction": ..., "reference": ...}` rows (without a sample key), in file order."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    raw = list(numbered_rows(path))
    if not raw:
        raise BadFile(f"{path}: no rows to score")
    if all("user_id" in row and "status" in row for _, row in raw):
        return [(row.key, row.prediction, row.reference) for row in read_rows(path).values()]
    pairs: list[Pair] = []
    for number, row in raw:
        where = f"{path}:{number}"
        for key in ("prediction", "reference"):
            if key not in row:
                raise BadFile(f"{where}: missing field {key!r}")
        prediction, reference = row["prediction"], row["reference"]
        if not isinstance(reference, str):
            raise BadFile(f"{where}: 'reference' must be a string, got {type(reference).__name__}")
        if prediction is not None and not isinstance(prediction, str):
            raise BadFile(f"{where}: 'prediction' must be a string or null, got {type(prediction).__name__}")
        pairs.append((None, prediction, reference))
    return pairs


def evaluate_file(path: str | Path) -> Scores:
    """Score a JSONL file's pairs (`read_pairs`). A null prediction (a failed sample) is scored as empty and
    counted in `Scores.missing`. BLEU and METEOR equal the run's `metrics.json`; ROUGE's bootstrap aggregate
    (as DPL computes it) depends on the order of the pairs, which there is the split's."""
    pairs = read_pairs(path)
    return score([p or "" for _, p, _ in pairs], [r for _, _, r in pairs], missing=sum(p is None for _, p, _ in pairs))


def compare_files(baseline: str | Path, system: str | Path,
                  bootstrap: PairedBootstrap | None = None) -> tuple[int, dict[str, Difference]]:
    """`system` minus `baseline` on the samples both hold (by sample for run files, else line by line), with
    paired bootstrap intervals; returns the number of pairs and each score's `Difference`."""
    theirs, ours = read_pairs(baseline), read_pairs(system)
    if any(key is None for key, _, _ in (*theirs, *ours)):
        if len(theirs) != len(ours) or any(a[2] != b[2] for a, b in zip(theirs, ours)):
            raise BadFile(f"{baseline} and {system} do not hold the same references line by line")
        matched = list(zip(theirs, ours))
    else:
        by_key = {pair[0]: pair for pair in theirs}
        matched = [(by_key[pair[0]], pair) for pair in ours if pair[0] in by_key]
        if not matched:
            raise BadFile(f"{baseline} and {system} have no sample in common")
    differences = (bootstrap or PairedBootstrap()).compare([a[1] or "" for a, _ in matched],
                                                           [b[1] or "" for _, b in matched],
                                                           [b[2] for _, b in matched])
    return len(matched), differences
