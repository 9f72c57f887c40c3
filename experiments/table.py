"""The results table of a grid, shaped like the paper's Table 1: `results.md` and `results.csv`."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..metrics import DIAGNOSTICS, METRICS, SCALES, SCORES
from ..programs import STAGES, Usage
from .grid import DataSpec, Grid

COSTS = {"calls": "LLM calls", "prompt_tokens": "prompt tokens", "completion_tokens": "completion tokens",
         "seconds": "seconds"}


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
    costs = Usage.sum([metrics["usage_per_sample"]]).total()
    return {key: metrics[key] for key in (*SCORES, *DIAGNOSTICS)} | costs | {"seconds": metrics["seconds_per_sample"]}


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
    if key in SCORES:
        return f"{value:.2f}" if SCALES[key] > 1 else f"{value:.4f}"
    if key in DIAGNOSTICS:
        return f"{value:.2f}"
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
    header = ["method", "variant", "temperature", *SCORES.values(), *DIAGNOSTICS.values(),
              *(f"{c} / sample" for c in COSTS.values()),
              "samples", "failed"]
    for data in grid.data:
        for model in grid.models:
            lines += ["", f"## {data.name}: {data.describe()} · model {model}", "",
                      "| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
            for row in rows:
                if row.data == data and row.model == model:
                    cells = [row.method, row.variant, ", ".join(f"{t:g}" for t in row.temperatures),
                             *(_shown(row, key) for key in (*SCORES, *DIAGNOSTICS, *COSTS)), str(row.samples),
                             str(row.failed)]
                    lines.append("| " + " | ".join(cells) + " |")
            lms = grid.models[model]
            lines += ["", "Model " + model + ": " + "; ".join(
                f"{stage} `{lms[stage].model}` at {lms[stage].api_base}" for stage in STAGES) + "."]
    missing = [cell.id for cell in grid.cells() if cell.id not in metrics]
    if missing:
        lines += ["", "Not run yet (no row above): " + ", ".join(f"`{i}`" for i in missing) + "."]
    variants = [f"`{v.name}` = {dict(v.options)}" for v in grid.variants]
    if variants:
        lines += ["", "Variants: " + "; ".join(variants) + "."]
    signatures = {metric.name: sorted({m["signatures"][metric.name] for m in metrics.values()}) for metric in METRICS}
    lines += ["", "Metric signatures:", ""]
    lines += [f"- {name}: `{signature}`" for name, values in signatures.items() for signature in values]
    return "\n".join(lines) + "\n"


def render_csv(rows: list[Row]) -> str:
    """One line per row: each score and cost as mean, min and max; `best` names the scores marked best."""
    keys = [*SCORES, *DIAGNOSTICS, *COSTS]
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
