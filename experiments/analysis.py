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

from ..programs import StageFailure, Usage, call_stage
from ..runner import CONCURRENCY, METRICS, PREDICTIONS, RUN_RECORD, folder_lock, read_rows, replaced, write_json
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
                concurrency: int = CONCURRENCY) -> dict[str, Any]:
    """Judge the validated features of a finished run's ok samples; its UVQ, categories and judgments."""
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
    per_sample = []
    for row in rows:
        valid = [j["feature"] | {"category": j["category"]} for j in judgments
                 if j["sample"] == str(row.key) and j.get("valid")]
        kept = unique_features(valid, encoder, threshold)
        per_sample.append(len(kept))
        unique += kept
    uvq = sum(per_sample) / len(per_sample) if per_sample else 0.0
    return {
        "run": str(folder), "name": folder.name, "method": record.get("method"),
        "extractor": record["lms"]["extract"]["model"],
        "bleu": json.loads(metrics_file.read_text(encoding="utf-8"))["bleu"],
        "samples": len(rows), "features": len(features),
        "judge_failures": sum(j["status"] == "failed" for j in judgments),
        "valid": sum(bool(j.get("valid")) for j in judgments),
        "uvq": uvq, "log10_uvq": math.log10(uvq) if uvq > 0 else None,
        "categories": dict(Counter(f["category"] for f in unique)),
        "judge_usage": Usage.sum(u.stages for u in usages).total(),
        "judgments": judgments,
    }


def analyze(run_dirs: list[Path], judge_lm: dspy.LM, out: Path, encoder: Encoder | None = None,
            threshold: float | None = None, concurrency: int = CONCURRENCY, attempts: int = 3) -> dict[str, Any]:
    """Analyze each run, group them by extractor model, write analysis.json and the two figures to `out`."""
    judge = Judge(attempts)
    judge.set_lm(judge_lm)
    runs = [analyze_run(Path(folder), judge, encoder, threshold, concurrency) for folder in run_dirs]
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

    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
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
    figure.savefig(path, dpi=150)


def plot_categories(extractors: dict[str, dict[str, Any]], path: Path) -> None:
    """Fig. 3: the share of each category among the unique valid features, a stacked bar per extractor."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.5 + 1.2 * len(extractors), 4), layout="constrained")
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
