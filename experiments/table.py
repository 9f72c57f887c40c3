"""The results table of a grid, shaped like the paper's Table 1 (`results.md`, `results.csv`), and each row's
paired differences from the grid's baseline rows (`comparisons.csv`, and under each table in `results.md`)."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..metrics import DIAGNOSTICS, METRICS, SCALES, SCORES, Difference, PairedBootstrap
from ..programs import REVIEW_STAGES, Usage
from ..runner import PredictionRow
from .grid import EXTERNAL, DataSpec, Grid, row_name

COSTS = {"calls": "LLM calls", "prompt_tokens": "prompt tokens", "completion_tokens": "completion tokens",
         "generator_prompt_tokens": "generator prompt tokens", "seconds": "seconds"}
"""Costs per sample; the generator's prompt tokens are those of the stages that write the review (`REVIEW_STAGES`):
the context a method gives the generator, e.g. POPI's summary against rag's past reviews."""


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

    @property
    def name(self) -> str:
        return row_name(self.method, self.variant)


@dataclass(frozen=True)
class Comparison:
    """A row against a baseline row of the same data, model and temperatures, on the samples both finished:
    `baseline` is that row's name, `against` the grid's baseline that chose it."""

    row: Row
    baseline: str
    pairs: int
    differences: Mapping[str, Difference]
    against: str = ""


def baseline_row(grid: Grid, name: str, row: Row, rows: list[Row]) -> Row | None:
    """The row that `row` is compared with for the grid's baseline `name`. A method's bare name means that method
    in `row`'s own variant (rag/document against non-p/document), or as published where the variant leaves the
    method out (it is the same program there); any other name means that row."""
    names = [row_name(name, row.variant), name] if name in grid.methods else [name]
    same = [b for b in rows if (b.data, b.model, b.temperatures) == (row.data, row.model, row.temperatures)]
    return next((b for wanted in names for b in same if b.name == wanted), None)


def compare_rows(grid: Grid, rows: list[Row], predictions: Mapping[str, list[PredictionRow]],
                 bootstrap: PairedBootstrap | None = None) -> list[Comparison]:
    """Each row against each of the grid's baselines, by paired bootstrap over the samples (pooled over the
    row's temperatures, sample by sample); a failed sample counts as an empty prediction, as in the scores. A pair
    of rows is compared once, under the first baseline that names it (a grid may name `rag` for the rows of its
    variants and `rag/document` for rows whose variant has no `rag`)."""
    bootstrap = bootstrap or PairedBootstrap()
    out, compared = [], set()
    for base_name in grid.baselines:
        for row in rows:
            base = baseline_row(grid, base_name, row, rows)
            if base is None or base is row or (id(row), id(base)) in compared:
                continue
            compared.add((id(row), id(base)))
            ours, theirs, references = [], [], []
            for cell, base_cell in zip(row.cells, base.cells):
                baseline_rows = {r.key: r for r in predictions[base_cell]}
                for sample in predictions[cell]:
                    if (other := baseline_rows.get(sample.key)) is not None:
                        ours.append(sample.prediction or "")
                        theirs.append(other.prediction or "")
                        references.append(sample.reference)
            if references:
                out.append(Comparison(row, base.name, len(references), bootstrap.compare(theirs, ours, references),
                                      base_name))
    return out


def _cell_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    usage = metrics["usage_per_sample"]
    costs = Usage.sum([usage]).total()
    generator = sum(usage.get(stage, {}).get("prompt_tokens", 0) for stage in REVIEW_STAGES)
    return ({key: metrics[key] for key in (*SCORES, *DIAGNOSTICS)} | costs
            | {"generator_prompt_tokens": generator, "seconds": metrics["seconds_per_sample"]})


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
                        continue  # not run yet (a table made without computing it)
                    per_cell = [_cell_values(metrics[i]) for i in ids]
                    block.append(Row(
                        data, model, method, variant.name, group, ids,
                        {key: tuple(values[key] for values in per_cell) for key in per_cell[0]},
                        samples=metrics[ids[0]]["samples"], failed=sum(metrics[i]["failed"] for i in ids),
                    ))
            for external in grid.externals:
                if (external.data, external.model) == (data.name, model) and external.id in metrics:
                    values = _cell_values(metrics[external.id])
                    block.append(Row(data, model, external.name, EXTERNAL, (external.temperature,), (external.id,),
                                     {key: (value,) for key, value in values.items()},
                                     samples=metrics[external.id]["samples"], failed=metrics[external.id]["failed"]))
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


def _difference(key: str, difference: Difference) -> str:
    def signed(value: float) -> str:
        return ("+" if value > 0 else "") + _number(key, value)

    text = f"{signed(difference.delta)} [{signed(difference.low)}, {signed(difference.high)}]"
    return f"**{text}**" if difference.significant else text


def _comparison_lines(comparisons: list[Comparison]) -> list[str]:
    lines = []
    for against in dict.fromkeys(c.against for c in comparisons):
        shown = [c for c in comparisons if c.against == against]
        lines += ["", f"Against `{against}` (row minus baseline, 95% paired bootstrap interval; **bold**: the "
                      "interval leaves out zero, a significant difference):", "",
                  "| row | baseline | pairs | " + " | ".join(f"Δ {label}" for label in SCORES.values()) + " |",
                  "|---|---|" + "---:|" * (len(SCORES) + 1)]
        lines += [f"| {c.row.name} | {c.baseline} | {c.pairs} | "
                  + " | ".join(_difference(k, c.differences[k]) for k in SCORES) + " |" for c in shown]
    return lines


def render_markdown(grid: Grid, rows: list[Row], metrics: Mapping[str, Mapping[str, Any]],
                    comparisons: list[Comparison] = (), bootstrap: PairedBootstrap | None = None) -> str:
    lines = [
        "# Results",
        "",
        "Scores as in the paper's Table 1 (BLEU 0-100; METEOR, ROUGE 0-1) and cost per sample (LLM calls, "
        "prompt and completion tokens, the generator's prompt tokens (the review-writing stages': the context a method "
        "gives it), seconds of the run that produced the sample). A row over several "
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
            lines += _comparison_lines([c for c in comparisons if (c.row.data, c.row.model) == (data, model)])
            lms = grid.models[model]
            stages = dict.fromkeys(stage for cell in grid.cells() if cell.model == model for stage in cell.settings.lms)
            lines += ["", "Model " + model + ": " + "; ".join(
                f"{stage} `{lms[stage].model}` at {lms[stage].api_base}" for stage in stages) + "."]
    missing = [cell.id for cell in [*grid.cells(), *grid.externals] if cell.id not in metrics]
    if missing:
        lines += ["", "Not run yet (no row above): " + ", ".join(f"`{i}`" for i in missing) + "."]
    variants = [f"`{v.name}` = {dict(v.options)}" for v in grid.variants]
    if variants:
        lines += ["", "Variants: " + "; ".join(variants) + "."]
    signatures = {metric.name: sorted({m["signatures"][metric.name] for m in metrics.values()}) for metric in METRICS}
    lines += ["", "Metric signatures:", ""]
    lines += [f"- {name}: `{signature}`" for name, values in signatures.items() for signature in values]
    if comparisons:
        lines.append(f"- differences: `{(bootstrap or PairedBootstrap()).signature()}`")
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


def render_comparisons_csv(comparisons: list[Comparison]) -> str:
    """One line per row, baseline and score: the difference, its interval, p-value and whether it is significant."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["data", "model", "row", "baseline", "temperatures", "pairs", "score", "delta", "low", "high",
                     "p_value", "significant"])
    for c in comparisons:
        for key, d in c.differences.items():
            writer.writerow([c.row.data.name, c.row.model, c.row.name, c.baseline,
                             " ".join(f"{t:g}" for t in c.row.temperatures), c.pairs, key, round(d.delta, 6),
                             round(d.low, 6), round(d.high, 6), round(d.p_value, 4), int(d.significant)])
    return buffer.getvalue()
