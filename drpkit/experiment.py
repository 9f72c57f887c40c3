"""`drp experiment GRID.toml`: methods x variants x models x temperatures x data, each cell one resumable
`runner.run` into `<out>/<cell-id>/`, summed up in a results table shaped like the paper's Table 1."""

from __future__ import annotations

import csv
import io
import re
import statistics
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import dspy

from drpkit.data import SAMPLE_DIR, load_reviews
from drpkit.data.loading import ReviewData
from drpkit.data.representatives import Embedder
from drpkit.lms import ADAPTERS, LMSpec, StageLMs
from drpkit.programs import DRP, METHODS, STAGES, DRPConfig
from drpkit.runner import (PREDICTIONS, RUN_RECORD, RunSettings, build_tasks, check_settings, read_rows, run, unfinished,
                           write_metrics)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SCORES = {"bleu": "BLEU", "meteor": "METEOR", "rouge1": "ROUGE-1", "rougeL": "ROUGE-L"}
LENGTH = {"length_ratio": "length ratio"}  # predictions' over references' length: BLEU's brevity penalty
COSTS = {"calls": "LLM calls", "prompt_tokens": "prompt tokens", "completion_tokens": "completion tokens",
         "seconds": "seconds"}
RUN_OPTIONS = {"num_retrieved": 8, "num_compared": 8}
OPTIONS = set(RUN_OPTIONS) | {f.name for f in fields(DRPConfig)}
LM_OPTIONS = {f.name for f in fields(LMSpec)} - {"temperature"}  # temperature is a grid axis
BASE = "base"  # the variant without overrides: the method as published
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class DataSpec:
    """Which samples: a data source as `drp run --data` takes it, a split and the first `limit` rows."""

    name: str
    source: str
    split: str = "test"
    limit: int | None = None
    category: str | None = None

    def load(self) -> ReviewData:
        return load_reviews(SAMPLE_DIR if self.source == "sample" else self.source, category=self.category)

    def describe(self) -> str:
        limit = f", first {self.limit}" if self.limit else ""
        return f"{self.source} ({self.category + ', ' if self.category else ''}split {self.split}{limit})"


@dataclass(frozen=True)
class Variant:
    """Named overrides of the run options (DRPConfig fields, num_retrieved, num_compared), for `methods`."""

    name: str
    options: Mapping[str, Any]
    methods: tuple[str, ...] | None = None  # None: every method of the grid


@dataclass(frozen=True)
class Cell:
    """One run: a method's variant with one model at one temperature on one data set."""

    method: str
    variant: str
    model: str
    temperature: float
    data: DataSpec
    lms: StageLMs
    settings: RunSettings

    @property
    def id(self) -> str:
        return f"{self.method}-{self.variant}-{self.model}-t{self.temperature:g}-{self.data.name}"


@dataclass(frozen=True)
class Grid:
    methods: tuple[str, ...]
    variants: tuple[Variant, ...]
    models: Mapping[str, StageLMs]
    temperatures: tuple[tuple[float, ...], ...]  # a group of several is averaged into one table row
    data: tuple[DataSpec, ...]
    options: Mapping[str, Any]  # [run]: shared by every cell
    adapter: str = "json"
    embedder: str | None = None

    def rows(self) -> list[tuple[str, Variant]]:
        """(method, variant) in table order: each method as published, then its variants."""
        return [(method, variant) for method in self.methods
                for variant in (Variant(BASE, {}), *self.variants)
                if variant.methods is None or method in variant.methods]

    def cell(self, method: str, variant: Variant, model: str, temperature: float, data: DataSpec) -> Cell:
        """The cell's settings: the grid's run options, the variant's overrides, then the method's own."""
        clash = {k for k, v in variant.options.items() if METHODS[method].config.get(k, v) != v}
        if clash:
            raise ValueError(f"variant {variant.name!r} contradicts method {method!r} on {sorted(clash)}")
        options = {**RUN_OPTIONS, **self.options, **variant.options}
        run_options = {key: options.pop(key) for key in RUN_OPTIONS}
        config, num_retrieved, num_compared = METHODS[method].apply(
            DRPConfig(**options), run_options["num_retrieved"], run_options["num_compared"])
        base = self.models[model]
        lms = StageLMs(**{stage: replace(getattr(base, stage), temperature=temperature) for stage in STAGES})
        settings = RunSettings(data=data.source, split=data.split, limit=data.limit, method=method,
                               num_retrieved=num_retrieved, num_compared=num_compared, program=config,
                               adapter=self.adapter, lms=lms.describe())
        return Cell(method, variant.name, model, temperature, data, lms, settings)

    def cells(self) -> list[Cell]:
        temperatures = sorted({t for group in self.temperatures for t in group})
        return [self.cell(method, variant, model, t, data)
                for data in self.data for model in self.models for method, variant in self.rows()
                for t in temperatures]


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file (format: README, "Experiments"); errors name the offending key."""
    spec = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    _known(spec, {"methods", "variants", "models", "temperatures", "data", "run", "adapter", "embedder"}, "the grid")
    methods = tuple(spec.get("methods") or ())
    if not methods or set(methods) - set(METHODS):
        raise ValueError(f"methods: expected a list of {sorted(METHODS)}, got {methods!r}")
    options = spec.get("run", {})
    _known(options, OPTIONS, "[run]")
    variants = []
    for name, table in spec.get("variants", {}).items():
        _name(name, "variant")
        table = dict(table)
        targets = table.pop("methods", None)
        _known(table, OPTIONS, f"variant {name!r}")
        if targets is not None and set(targets) - set(methods):
            raise ValueError(f"variant {name!r}: methods {targets!r} are not all in the grid's methods")
        variants.append(Variant(name, table, tuple(targets) if targets is not None else None))
    models = {name: _model(name, table) for name, table in spec.get("models", {}).items()} or {
        "default": StageLMs()}
    temperatures = tuple(tuple(map(float, t)) if isinstance(t, list) else (float(t),)
                         for t in spec.get("temperatures", [0.0]))
    data = []
    for name, table in spec.get("data", {}).items():
        _name(name, "data set")
        _known(table, {f.name for f in fields(DataSpec)} - {"name"}, f"data {name!r}")
        data.append(DataSpec(name=name, **table))
    if not data:
        raise ValueError("the grid has no [data.NAME] table")
    adapter = spec.get("adapter", "json")
    if adapter not in ADAPTERS:
        raise ValueError(f"adapter: expected one of {sorted(ADAPTERS)}, got {adapter!r}")
    grid = Grid(methods, tuple(variants), models, temperatures, tuple(data), options, adapter, spec.get("embedder"))
    grid.cells()  # every cell's settings are valid, before anything runs
    return grid


def _model(name: str, table: Mapping[str, Any]) -> StageLMs:
    """A [models.NAME] table: LMSpec settings for every stage, and optional per-stage tables over them."""
    _name(name, "model")
    shared = {k: v for k, v in table.items() if k not in STAGES}
    _known(shared, LM_OPTIONS, f"model {name!r}")
    base = LMSpec(**shared)
    stages = {}
    for stage in STAGES:
        if stage in table:
            _known(table[stage], LM_OPTIONS, f"model {name!r}, stage {stage}")
            stages[stage] = replace(base, **table[stage])
    return StageLMs.single(base).with_overrides(**stages)


def _known(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _name(name: str, what: str) -> None:
    if not _NAME.match(name) or name == BASE:
        raise ValueError(f"{what} name {name!r}: use letters, digits, '_', '.', '-' (and not {BASE!r})")


LMFactory = Callable[[StageLMs], Mapping[str, dspy.LM]]


def run_grid(grid: Grid, out: Path, build_lms: LMFactory = StageLMs.build,
             check_servers: Callable[[StageLMs], None] = lambda lms: None, concurrency: int = 8,
             compute: bool = True) -> str:
    """Run every cell into `out/<cell-id>/` (finished samples are reused, not recomputed), then write
    `results.md` and `results.csv` to `out`; returns the Markdown. `check_servers` is called before a cell
    that has samples left to compute. With `compute=False` nothing runs: the table is made from the
    samples already in `out`, and cells without a run are listed as missing."""
    embedder = Embedder(grid.embedder)  # one model, loaded once if any cell selects with K-means
    loaded: dict[tuple[str, str | None], ReviewData] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for cell in grid.cells():
        source = (cell.data.source, cell.data.category)
        if source not in loaded:
            loaded[source] = cell.data.load()
        data = loaded[source]
        folder = out / cell.id
        if not compute:
            if read_rows(folder / PREDICTIONS):  # a cell with at least one finished sample
                check_settings(folder / RUN_RECORD, cell.settings)
                tasks, unusable = build_tasks(data, cell.settings)
                metrics[cell.id] = write_metrics(folder, [t.user_id for t in tasks] + [r["user_id"] for r in unusable])
            continue
        if unfinished(build_tasks(data, cell.settings)[0], folder):
            check_servers(cell.lms)
        program = DRP(cell.settings.program, embedder=embedder)
        program.set_stage_lms(build_lms(cell.lms))
        metrics[cell.id] = run(program, data, cell.settings, folder, concurrency=concurrency)
    rows = table_rows(grid, metrics)
    markdown = render_markdown(grid, rows, metrics)
    (out / "results.md").write_text(markdown, encoding="utf-8")
    (out / "results.csv").write_text(render_csv(rows), encoding="utf-8")
    return markdown


@dataclass(frozen=True)
class Row:
    """One line of the table: a method's variant with one model on one data set, over a temperature group."""

    data: DataSpec
    model: str
    method: str
    variant: str
    temperatures: tuple[float, ...]
    cells: tuple[str, ...]
    values: Mapping[str, tuple[float, ...]]  # per score and cost, one value per temperature
    samples: int
    failed: int
    best: tuple[str, ...] = ()

    def mean(self, key: str) -> float:
        return statistics.fmean(self.values[key])


def _cell_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    usage = metrics["usage_per_sample"].values()
    costs = {key: sum(stage[key] for stage in usage) for key in ("calls", "prompt_tokens", "completion_tokens")}
    return {key: metrics[key] for key in (*SCORES, *LENGTH)} | costs | {"seconds": metrics["seconds_per_sample"]}


def table_rows(grid: Grid, metrics: Mapping[str, Mapping[str, Any]]) -> list[Row]:
    """Rows in grid order; per (data, model) block the best mean of each score is marked."""
    rows = []
    for data in grid.data:
        for model in grid.models:
            block = []
            for method, variant in grid.rows():
                for group in grid.temperatures:
                    ids = tuple(grid.cell(method, variant, model, t, data).id for t in group)
                    if any(i not in metrics for i in ids):
                        continue  # not run yet (a table made with compute=False)
                    per_cell = [_cell_values(metrics[i]) for i in ids]
                    block.append(Row(
                        data, model, method, variant.name, group, ids,
                        {key: tuple(values[key] for values in per_cell) for key in per_cell[0]},
                        samples=metrics[ids[0]]["samples"], failed=sum(metrics[i]["failed"] for i in ids),
                    ))
            best = {key: max((row.mean(key) for row in block), default=0.0) for key in SCORES}
            rows += [replace(row, best=tuple(k for k in SCORES if row.mean(k) == best[k])) for row in block]
    return rows


def _number(key: str, value: float) -> str:
    if key in SCORES or key in LENGTH:
        return f"{value:.2f}" if key in ("bleu", "length_ratio") else f"{value:.4f}"
    return f"{value:.1f}" if key == "seconds" else f"{value:.0f}"


def _shown(row: Row, key: str) -> str:
    text = _number(key, row.mean(key))
    if key in row.best:
        text = f"**{text}**"
    values = row.values[key]
    if len(values) > 1:
        text += f" ({_number(key, min(values))}–{_number(key, max(values))})"
    return text


def render_markdown(grid: Grid, rows: list[Row], metrics: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [
        "# Results",
        "",
        "Scores as in the paper's Table 1 (BLEU 0-100; METEOR, ROUGE 0-1) and cost per sample (LLM calls, "
        "prompt and completion tokens, seconds of the run that produced the sample). A row over several "
        "temperatures shows their mean and (min–max). **Bold**: best of its data set and model. Length ratio: the "
        "predictions' length over the references' (BLEU tokens; failed samples count as empty); below 1 BLEU "
        "is scaled down by its brevity penalty exp(1 - 1/ratio). Costs count "
        "the LM work the row's runs did: a stage answer found in DSPy's cache (an ablation reusing its base "
        "method's Extract, say) costs nothing there. Each row's runs are in the folders named in results.csv.",
    ]
    header = ["method", "variant", "temperature", *SCORES.values(), *LENGTH.values(),
              *(f"{c} / sample" for c in COSTS.values()),
              "samples", "failed"]
    for data in grid.data:
        for model in grid.models:
            lines += ["", f"## {data.name}: {data.describe()} · model {model}", "",
                      "| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
            for row in rows:
                if row.data == data and row.model == model:
                    cells = [row.method, row.variant, ", ".join(f"{t:g}" for t in row.temperatures),
                             *(_shown(row, key) for key in (*SCORES, *LENGTH, *COSTS)), str(row.samples),
                             str(row.failed)]
                    lines.append("| " + " | ".join(cells) + " |")
            lms = grid.models[model]
            lines += ["", "Model " + model + ": " + "; ".join(
                f"{stage} `{getattr(lms, stage).model}` at {getattr(lms, stage).api_base}" for stage in STAGES) + "."]
    missing = [cell.id for cell in grid.cells() if cell.id not in metrics]
    if missing:
        lines += ["", "Not run yet (no row above): " + ", ".join(f"`{i}`" for i in missing) + "."]
    variants = [f"`{v.name}` = {dict(v.options)}" for v in grid.variants]
    if variants:
        lines += ["", "Variants: " + "; ".join(variants) + "."]
    signatures = {label: sorted({m["signatures"][key] for m in metrics.values()})
                  for label, key in (("BLEU", "bleu"), ("METEOR", "meteor"), ("ROUGE", "rouge"))}
    lines += ["", "Metric signatures:", ""]
    lines += [f"- {label}: `{signature}`" for label, values in signatures.items() for signature in values]
    return "\n".join(lines) + "\n"


def render_csv(rows: list[Row]) -> str:
    """One line per row: each score and cost as mean, min and max; `best` names the scores marked best."""
    keys = [*SCORES, *LENGTH, *COSTS]
    header = ["data", "model", "method", "variant", "temperatures",
              *(f"{key}{suffix}" for key in keys for suffix in ("", "_min", "_max")),
              "samples", "failed", "best", "cells"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        numbers = [round(f(row.values[key]), 6) for key in keys
                   for f in (statistics.fmean, min, max)]
        writer.writerow([row.data.name, row.model, row.method, row.variant,
                         " ".join(f"{t:g}" for t in row.temperatures), *numbers, row.samples, row.failed,
                         " ".join(row.best), " ".join(row.cells)])
    return buffer.getvalue()
