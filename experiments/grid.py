"""A grid file (TOML): methods x variants x models x temperatures x data sets, each cell one run's settings;
checked whole before anything runs."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..data import SAMPLE_DIR, load_reviews
from ..data.loading import ReviewData
from ..programs import METHODS, STAGES, DRPConfig
from ..runner import PROFILES, RUN_OPTIONS, RunSettings, with_profile
from ..serving import LMSpec, StageLMs

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

OPTIONS = set(RUN_OPTIONS) | {f.name for f in fields(DRPConfig)} | {"profile"}
GRID_PROFILE = "paper"  # a grid's rows are the methods as published unless [run] or a variant names a profile
LM_OPTIONS = {f.name for f in fields(LMSpec)} - {"temperature"}  # temperature is a grid axis
BASE = "base"  # the variant without overrides: the method as published
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


EXTERNAL = "external"  # the variant of a row scored from a predictions file made outside the program


def row_name(method: str, variant: str) -> str:
    """How a grid names a table row: the method as published (or an external row's name), or `method/variant`."""
    return method if variant in (BASE, EXTERNAL) else f"{method}/{variant}"


@dataclass(frozen=True)
class DataSpec:
    """Which samples: a data source as `drp run --data` takes it, a split, and its first `limit` rows after the
    first `skip` (users held out from those a choice was made on)."""

    name: str
    source: str
    split: str = "test"
    limit: int | None = None
    skip: int = 0
    category: str | None = None

    def load(self) -> ReviewData:
        return load_reviews(SAMPLE_DIR if self.source == "sample" else self.source, category=self.category)

    def describe(self) -> str:
        end = f"{self.skip + self.limit}" if self.limit else "the end"
        limit = f", samples {self.skip + 1} to {end}" if self.skip else f", first {self.limit}" if self.limit else ""
        return f"{self.source} ({self.category + ', ' if self.category else ''}split {self.split}{limit})"


@dataclass(frozen=True)
class Variant:
    """Named overrides of the run options (DRPConfig fields, num_retrieved, num_compared), for `methods`."""

    name: str
    options: Mapping[str, Any]
    methods: tuple[str, ...] | None = None  # None: every method of the grid


@dataclass(frozen=True)
class External:
    """A row made outside the program (a hand-written prompt sent raw, say), scored on the grid's samples of
    `data`: the latest row of each sample in `predictions` (a `predictions.jsonl`, relative to the output folder)."""

    name: str
    data: str
    model: str
    predictions: str
    temperature: float = 0.0

    @property
    def id(self) -> str:
        return f"{self.name}-{EXTERNAL}-{self.model}-t{self.temperature:g}-{self.data}"


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
    embedder: str | None = None
    baselines: tuple[str, ...] = ()  # rows every other row is compared with (paired bootstrap), by `row_name`
    externals: tuple[External, ...] = ()

    def rows(self) -> list[tuple[str, Variant]]:
        """(method, variant) in table order: each method as published, then its variants."""
        return [(method, variant) for method in self.methods
                for variant in (Variant(BASE, {}), *self.variants)
                if variant.methods is None or method in variant.methods]

    def cell(self, method: str, variant: Variant, model: str, temperature: float, data: DataSpec) -> Cell:
        """The cell's settings: a profile's (the variant's, the grid's, or "paper"), the grid's run options, the
        variant's overrides, then the method's own."""
        clash = {k for k, v in variant.options.items() if METHODS[method].config.get(k, v) != v}
        if clash:
            raise ValueError(f"variant {variant.name!r} contradicts method {method!r} on {sorted(clash)}")
        options = {**self.options, **variant.options}
        options = {**RUN_OPTIONS, **with_profile(options.pop("profile", GRID_PROFILE), method, options)}
        run_options = {key: options.pop(key) for key in RUN_OPTIONS}
        lms = self.models[model].with_settings(temperature=temperature)
        settings = RunSettings.for_method(method, DRPConfig(**options), **run_options, lms=lms, data=data.source,
                                          split=data.split, limit=data.limit,
                                          skip=data.skip)
        return Cell(method, variant.name, model, temperature, data, lms, settings)

    def cells(self) -> list[Cell]:
        temperatures = sorted({t for group in self.temperatures for t in group})
        return [self.cell(method, variant, model, t, data)
                for data in self.data for model in self.models for method, variant in self.rows()
                for t in temperatures]


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file (format: README, "Experiments"); errors name the offending key."""
    spec = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    moved = {"adapter", "prompt_order"} & set(spec)
    if moved:
        raise ValueError(f"{sorted(moved)}: set these under [run] (or in a variant), not at the grid's top level")
    _known(spec, {"methods", "variants", "models", "temperatures", "data", "run", "embedder", "baseline", "external"},
           "the grid")
    methods = tuple(spec.get("methods") or ())
    if not methods or set(methods) - set(METHODS):
        raise ValueError(f"methods: expected a list of {sorted(METHODS)}, got {methods!r}")
    options = spec.get("run", {})
    _known(options, OPTIONS, "[run]")
    for table in (options, *spec.get("variants", {}).values()):
        if "profile" in table and table["profile"] not in PROFILES:
            raise ValueError(f"profile: expected one of {sorted(PROFILES)}, got {table['profile']!r}")
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
    externals = []
    for name, table in spec.get("external", {}).items():
        _name(name, "external row")
        _known(table, {"data", "model", "predictions", "temperature"}, f"external {name!r}")
        table = {"data": data[0].name, "model": next(iter(models)), **table}
        if "predictions" not in table or table["data"] not in {d.name for d in data} or table["model"] not in models:
            raise ValueError(f"external {name!r}: needs `predictions` (a predictions.jsonl under the output folder), "
                             "and `data` and `model` naming the grid's")
        externals.append(External(name, **table))
    if {e.name for e in externals} & set(methods):
        raise ValueError("an external row is named like a method of the grid")
    baselines = spec.get("baseline", [])
    baselines = tuple([baselines] if isinstance(baselines, str) else baselines)
    grid = Grid(methods, tuple(variants), models, temperatures, tuple(data), options, spec.get("embedder"), baselines,
                tuple(externals))
    names = [row_name(method, variant.name) for method, variant in grid.rows()] + [e.name for e in externals]
    if set(baselines) - set(names):
        raise ValueError(f"baseline: {sorted(set(baselines) - set(names))} name no row of the grid; rows: {names}")
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
    return StageLMs(base, stages)


def _known(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _name(name: str, what: str) -> None:
    if not _NAME.match(name) or name == BASE:
        raise ValueError(f"{what} name {name!r}: use letters, digits, '_', '.', '-' (and not {BASE!r})")
