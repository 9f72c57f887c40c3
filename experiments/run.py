"""`drp experiment GRID.toml`: each cell of a grid one resumable run into `<out>/<cell-id>/`, then the results
table over them all."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import dspy

from ..data.loading import ReviewData
from ..data.tasks import SampleKey
from ..data.representatives import Embedder
from ..programs import DRP, STAGES
from ..runner import (CONCURRENCY, PREDICTIONS, RUN_RECORD, PredictionRow, atomic_write, build_tasks, check_settings,
                      folder_lock, metrics_of, read_rows, references, run, sample_keys, scored_rows, sync_archive,
                      unfinished, usage_errors, write_metrics)
from ..serving import StageLMs
from .grid import Grid, row_name
from .table import compare_rows, render_comparisons_csv, render_csv, render_markdown, table_rows

LMFactory = Callable[[StageLMs], Mapping[str, dspy.LM]]


def run_grid(grid: Grid, out: Path, build_lms: LMFactory = lambda lms: lms.build(STAGES),
             check_servers: Callable[[StageLMs], None] = lambda lms: None, concurrency: int = CONCURRENCY,
             compute: Collection[str] | None = None, archive: Path | None = None, retry_failed: bool = False) -> str:
    """Run every cell into `out/<cell-id>/` (finished samples are reused, not recomputed), then write
    `results.md`, `results.csv` and (with baselines) `comparisons.csv` to `out`; returns the Markdown.
    `check_servers` is called before a cell that has samples left to compute. `compute` names the rows to run
    (`row_name`s; None: all): the other cells, and with `compute=()` all, run nothing and enter the table with the
    samples already in `out`; cells without any are listed as missing. `out` is locked meanwhile: a second grid
    into it is refused, as is a second grid into the `archive`. With an `archive` folder, each cell's folder (and
    each external row's) is synced with its namesake there, and every new row goes to both (`runner.archive`):
    the archive alone, with the data, gives the tables back; they are written there too. `retry_failed`: the
    computed rows' failed samples are computed again (`runner.unfinished`)."""
    with folder_lock(out), folder_lock(archive) if archive is not None else contextlib.nullcontext():
        return _run_grid(grid, out, build_lms, check_servers, concurrency, compute, archive, retry_failed)


def _run_grid(grid: Grid, out: Path, build_lms: LMFactory, check_servers: Callable[[StageLMs], None],
              concurrency: int, compute: Collection[str] | None, archive: Path | None, retry_failed: bool) -> str:
    embedder = Embedder(grid.embedder)  # one model, loaded once if any cell selects with K-means
    loaded: dict[tuple[str, str | None], ReviewData] = {}
    metrics: dict[str, dict[str, Any]] = {}
    predictions: dict[str, list[PredictionRow]] = {}
    keys: dict[str, list[SampleKey]] = {}  # per data set: its samples, the same for every cell
    refs: dict[str, dict[SampleKey, str]] = {}  # per data set: the samples' references
    for cell in grid.cells():
        source = (cell.data.source, cell.data.category)
        if source not in loaded:
            with usage_errors(f"data {cell.data.name!r}"):
                loaded[source] = cell.data.load()
        data = loaded[source]
        folder = out / cell.id
        tasks, unusable = build_tasks(data, cell.settings)
        keys[cell.data.name] = sample_keys(tasks, unusable)
        refs[cell.data.name] = references(tasks, unusable)
        if compute is not None and row_name(cell.method, cell.variant) not in compute:
            if archive is not None:
                sync_archive(folder, archive / cell.id, refs[cell.data.name])
            if read_rows(folder / PREDICTIONS):  # a cell with at least one finished sample
                check_settings(folder / RUN_RECORD, cell.settings.of(DRP(cell.settings.program, embedder=embedder)))
                predictions[cell.id] = scored_rows(folder, keys[cell.data.name])
                metrics[cell.id] = write_metrics(folder, predictions[cell.id])
            continue
        if unfinished(tasks, read_rows(folder / PREDICTIONS), retry_failed):
            check_servers(cell.lms)
        program = DRP(cell.settings.program, embedder=embedder)
        program.set_stage_lms(build_lms(cell.lms))
        metrics[cell.id] = run(program, data, cell.settings, folder, concurrency=concurrency,
                               archive=archive / cell.id if archive is not None else None, retry_failed=retry_failed)
        predictions[cell.id] = scored_rows(folder, keys[cell.data.name])
    for external in grid.externals:  # rows made outside the program, scored on the same samples
        path = out / external.predictions
        if archive is not None:
            sync_archive(path.parent, (archive / external.predictions).parent, refs[external.data], path.name)
        if path.exists():
            predictions[external.id] = scored_rows(path.parent, keys[external.data], path.name)
            metrics[external.id] = metrics_of(predictions[external.id])
    rows = table_rows(grid, metrics)
    comparisons = compare_rows(grid, rows, predictions)
    markdown = render_markdown(grid, rows, metrics, comparisons)
    for folder in (out,) if archive is None else (out, archive):  # the archive's tables can be published
        atomic_write(folder / "results.md", markdown)
        atomic_write(folder / "results.csv", render_csv(rows))
        if comparisons:
            atomic_write(folder / "comparisons.csv", render_comparisons_csv(comparisons))
    return markdown
