"""`drp analyze`: the paper's RQ2. An LLM judges every validated difference feature of finished runs on five
validity criteria and a category; Unique Valid Quantity (UVQ) per run and category shares per extractor model
are written to analysis.json, with BLEU against UVQ (Fig. 2) and the category shares (Fig. 3) as PNGs."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Protocol

import dspy
import numpy as np
from tqdm import tqdm

from ..data.tasks import SampleKey
from ..metrics import BLEU, PairedBootstrap
from ..programs import StageFailure, Usage, call_stage
from ..runner import (CONCURRENCY, METRICS, PREDICTIONS, RUN_RECORD, PredictionRow, folder_lock, read_rows, replaced,
                      write_json)
from ..signatures import DifferenceFeature, JudgeFeature
from ..signatures.judge import CATEGORIES, CRITERIA

ANALYSIS = "analysis.json"
FIG_UVQ = "bleu_vs_uvq.png"
FIG_CATEGORIES = "categories.png"


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


class Judge(dspy.Module):
    """One judge call per feature; an unparseable answer is retried, then recorded as a failure."""

    def __init__(self, attempts: int = 3):
        super().__init__()
        self.predict = dspy.Predict(JudgeFeature)
        self.attempts = attempts

    def forward(self, feature: DifferenceFeature, usage: Usage) -> dict[str, Any]:
        try:
            answer = call_stage("judge", self.predict, usage, self.attempts, feature=feature.render())
        except StageFailure as failure:
            return {"status": "failed", "problems": failure.problems}
        criteria = {name: bool(answer[name]) for name in CRITERIA}
        return {"status": "ok", **criteria, "category": answer.category, "valid": all(criteria.values())}


def normalize_name(name: str) -> str:
    """'Sentence-Length ' and 'sentence length' are one feature."""
    return " ".join(re.findall(r"[a-z0-9]+", name.lower()))


def unique_features(features: list[dict[str, Any]], encoder: Encoder | None = None,
                    threshold: float | None = None) -> list[dict[str, Any]]:
    """One feature per normalized name and, with an encoder and a threshold, per group of features whose
    `name: definition` embeddings have cosine similarity >= threshold (the first one met is kept)."""
    first: dict[str, dict[str, Any]] = {}
    for feature in features:
        first.setdefault(normalize_name(feature["name"]), feature)
    by_name = list(first.values())
    if encoder is None or threshold is None or len(by_name) < 2:
        return by_name
    vectors = encoder.encode([f"{f['name']}: {f['definition']}" for f in by_name])
    kept: list[int] = []
    for i in range(len(by_name)):
        if all(float(vectors[i] @ vectors[j]) < threshold for j in kept):
            kept.append(i)
    return [by_name[i] for i in kept]


def analyze_run(folder: Path, judge: Judge, encoder: Encoder | None = None, threshold: float | None = None,
                concurrency: int = CONCURRENCY, others: dict[SampleKey, PredictionRow] | None = None) -> dict[str, Any]:
    """Judge the validated features of a finished run's ok samples; its UVQ, categories, judgments and the
    halves of its samples by UVQ (against `others`, a baseline's rows, if given)."""
    record = json.loads((folder / RUN_RECORD).read_text(encoding="utf-8"))
    metrics_file = folder / METRICS
    if not metrics_file.exists():
        raise ValueError(f"{folder} has no {METRICS}: finish the run first (rerun it into the same folder)")
    rows = [row for row in read_rows(folder / PREDICTIONS).values() if row.status == "ok"]
    features = [(row.key, comparison["asin"], feature) for row in rows
                for comparison in row.comparisons for feature in comparison["validated"]]
    usages = [Usage() for _ in features]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(judge, DifferenceFeature(**f[2]), usage=u) for f, u in zip(features, usages)]
        # the bar counts judgments as they finish, not in order: one slow first call would hold it still
        for _ in tqdm(as_completed(futures), total=len(futures), desc=f"judging {folder.name}", unit="feature",
                      dynamic_ncols=True):
            pass
        verdicts = [future.result() for future in futures]
    judgments = [{"sample": str(key), "user_id": key.user_id, "asin": asin, "feature": feature} | verdict
                 for (key, asin, feature), verdict in zip(features, verdicts)]

    unique: list[dict[str, Any]] = []
    per_sample: dict[SampleKey, int] = {}
    for row in rows:
        valid = [j["feature"] | {"category": j["category"]} for j in judgments
                 if j["sample"] == str(row.key) and j.get("valid")]
        kept = unique_features(valid, encoder, threshold)
        per_sample[row.key] = len(kept)
        unique += kept
    uvq = sum(per_sample.values()) / len(per_sample) if per_sample else 0.0
    return {
        "run": str(folder), "name": folder.name, "method": record.get("method"),
        "extractor": record["lms"]["extract"]["model"],
        "bleu": json.loads(metrics_file.read_text(encoding="utf-8"))["bleu"],
        "samples": len(rows), "features": len(features),
        "judge_failures": sum(j["status"] == "failed" for j in judgments),
        "valid": sum(bool(j.get("valid")) for j in judgments),
        "uvq": uvq, "log10_uvq": math.log10(uvq) if uvq > 0 else None,
        "by_uvq": uvq_halves({row.key: row for row in rows}, per_sample, others),
        "categories": dict(Counter(f["category"] for f in unique)),
        "judge_usage": Usage.sum(u.stages for u in usages).total(),
        "judgments": judgments,
    }


def baseline_rows(baseline: Path, run_dirs: list[Path]) -> dict[SampleKey, PredictionRow]:
    """The baseline's rows, checked before any judge call to hold every sample the runs finished."""
    others = read_rows(baseline / PREDICTIONS)
    for folder in run_dirs:
        keys = [key for key, row in read_rows(folder / PREDICTIONS).items() if row.status == "ok"]
        if missing := [key for key in keys if key not in others]:
            raise ValueError(f"the baseline {baseline} lacks {len(missing)} of the {len(keys)} samples of {folder} "
                             f"(first: {missing[0]}): compare runs of the same samples")
    return others


def uvq_halves(rows: dict[SampleKey, PredictionRow], uvq: dict[SampleKey, int],
               others: dict[SampleKey, PredictionRow] | None) -> list[dict[str, Any]]:
    """With one extractor, Fig. 2 is a point; within a run, does a sample with more valid differences get a better
    review? The run's samples split at the median UVQ, each half's corpus BLEU and, with `others` (a run of the
    same samples without differences, `rag` say), the baseline's on the same samples and the paired difference."""
    keys = sorted(uvq, key=lambda key: (uvq[key], str(key)))
    halves = []
    for name, part in (("fewer", keys[: len(keys) // 2]), ("more", keys[len(keys) // 2 :])):
        if not part:
            continue
        counts = [uvq[key] for key in part]
        references = [rows[key].reference for key in part]
        half = {"half": name, "samples": len(part), "uvq_min": counts[0], "uvq_max": counts[-1],
                "uvq": sum(counts) / len(counts),
                "bleu": BLEU().corpus_score([rows[key].prediction or "" for key in part], references)["bleu"]}
        if others is not None:
            theirs = [others[key].prediction or "" for key in part]  # a failed sample counts as empty, as in the table
            difference = PairedBootstrap([BLEU()]).compare(theirs, [rows[key].prediction or "" for key in part],
                                                             references)["bleu"]
            half |= {"baseline_bleu": BLEU().corpus_score(theirs, references)["bleu"], "delta": difference.delta,
                     "low": difference.low, "high": difference.high, "significant": difference.significant}
        halves.append(half)
    return halves


def analyze(run_dirs: list[Path], judge_lm: dspy.LM, out: Path, encoder: Encoder | None = None,
            threshold: float | None = None, concurrency: int = CONCURRENCY, attempts: int = 3,
            baseline: Path | None = None) -> dict[str, Any]:
    """Analyze each run, group them by extractor model, write analysis.json and the two figures to `out`."""
    others = baseline_rows(baseline, run_dirs) if baseline else None
    judge = Judge(attempts)
    judge.set_lm(judge_lm)
    runs = [analyze_run(Path(folder), judge, encoder, threshold, concurrency, others) for folder in run_dirs]
    extractors: dict[str, dict[str, Any]] = {}
    for run in runs:
        group = extractors.setdefault(run["extractor"], {"runs": [], "counts": Counter()})
        group["runs"].append(run["name"])
        group["counts"].update(run["categories"])
    for group in extractors.values():
        total = sum(group["counts"].values())
        group["categories"] = {c: group["counts"][c] / total if total else 0.0 for c in CATEGORIES}
        group["unique_valid_features"] = total
        del group["counts"]
    result = {
        "judge": judge_lm.model,
        "dedupe": {"names": "normalized (lower case, alphanumeric words)", "embedding_threshold": threshold},
        "uvq": "unique valid features per sample (a user and a target; all five criteria true), averaged over the run's ok samples",
        "by_uvq": "each run's ok samples split at the median UVQ: corpus BLEU per half"
                  + (f", against the baseline {baseline} on the same samples (paired bootstrap 95%)" if baseline else ""),
        "extractors": extractors,
        "runs": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):  # each output whole or not at all, one process at a time
        write_json(out / ANALYSIS, result)
        with replaced(out / FIG_UVQ) as path:
            plot_bleu_vs_uvq(runs, path)
        with replaced(out / FIG_CATEGORIES) as path:
            plot_categories(extractors, path)
    return result


def plot_bleu_vs_uvq(runs: list[dict[str, Any]], path: Path) -> None:
    """Fig. 2: BLEU against UVQ (log scale), one line per extractor model; runs without valid features
    have no place on a log axis and are left out (analysis.json lists them with uvq 0)."""
    from matplotlib.figure import Figure  # no pyplot: the Agg canvas, no display, no global state
    from matplotlib.ticker import FuncFormatter

    halves = [run for run in runs if run.get("by_uvq")]
    figure = Figure(figsize=(11 if halves else 6, 4), layout="constrained")
    axes, *within = figure.subplots(1, 2 if halves else 1, squeeze=False)[0]
    for extractor in dict.fromkeys(run["extractor"] for run in runs):
        points = sorted((run["uvq"], run["bleu"], run["name"]) for run in runs
                        if run["extractor"] == extractor and run["uvq"] > 0)
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=extractor)
            for x, y, name in points:
                axes.annotate(name, (x, y), fontsize=6, textcoords="offset points", xytext=(3, 3))
    axes.set_xscale("log")
    for set_formatter in (axes.xaxis.set_major_formatter, axes.xaxis.set_minor_formatter):
        set_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axes.set_xlabel("Unique Valid Quantity per user (log scale)")
    axes.set_ylabel("BLEU")
    axes.set_title("BLEU vs UVQ per extractor")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(title="extractor", fontsize=7)
    if within:
        plot_halves(halves, within[0])
    figure.savefig(path, dpi=150)


def plot_halves(runs: list[dict[str, Any]], axes: Any) -> None:
    """Within each run: BLEU of its samples with fewer and with more valid differences than the median (solid),
    and the baseline's BLEU on the same samples (dashed), at each half's mean UVQ."""
    for run in runs:
        xs = [half["uvq"] for half in run["by_uvq"]]
        (line,) = axes.plot(xs, [half["bleu"] for half in run["by_uvq"]], marker="o", label=run["name"])
        if "baseline_bleu" in run["by_uvq"][0]:
            axes.plot(xs, [half["baseline_bleu"] for half in run["by_uvq"]], marker="s", linestyle="--",
                      color=line.get_color(), label=f"baseline, same samples as {run['name']}")
    axes.set_xlabel("mean UVQ of the half (samples split at the run's median)")
    axes.set_ylabel("BLEU of the half")
    axes.set_title("Within a run: fewer vs more valid differences")
    axes.legend(fontsize=6)


def plot_categories(extractors: dict[str, dict[str, Any]], path: Path) -> None:
    """Fig. 3: the share of each category among the unique valid features, a stacked bar per extractor."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.5, 1.5 + 1.2 * len(extractors)), 4), layout="constrained")  # room for the title
    axes = figure.subplots()
    names = list(extractors)
    bottom = np.zeros(len(names))
    for category in CATEGORIES:
        shares = np.array([extractors[name]["categories"][category] for name in names])
        axes.bar(names, shares, bottom=bottom, label=category)
        bottom += shares
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of unique valid features")
    axes.set_title("Feature categories per extractor")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    figure.savefig(path, dpi=150)
