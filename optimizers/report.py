"""report.json and a readable report.md of an optimization: scores before/after, instruction diffs, cost."""

from __future__ import annotations

import difflib
import textwrap
from pathlib import Path
from typing import Any

from ..metrics import SCORES
from ..runner import atomic_write, write_json

_SCORES = {**SCORES, "metric": "metric"}


def instruction_diff(stage: str, before: str, after: str) -> str:
    """A unified diff of two instructions, wrapped to 100 columns so that it reads line by line."""
    lines = [textwrap.fill(before, 100).splitlines(), textwrap.fill(after, 100).splitlines()]
    return "\n".join(difflib.unified_diff(*lines, f"{stage} (default)", f"{stage} (optimized)", lineterm=""))


def _change(stage: str, before: str, after: str) -> str:
    if before == after:
        return "unchanged"
    diff = instruction_diff(stage, before, after)
    if not diff:  # MIPROv2 re-proposes the default with its line breaks joined, say
        return ("same words, other whitespace: the prompt is not the same text, so the LM's answers differ; "
                "a score change here is not due to the wording")
    return f"```diff\n{diff}\n```"


def write_report(out: Path, report: dict[str, Any]) -> None:
    write_json(out / "report.json", report)
    s, o = report["settings"], report["optimizer"]
    lines = [
        f"# Optimization: {o['name']} on {', '.join(s['stages'])}",
        "",
        f"Data `{s['data']}`, method `{s['method']}`; metric `{s['metric']}`"
        + (f" (BLEU weight {s['bleu_weight']})" if s["metric"] == "mix" else "")
        + f"; examples: train {report['examples']['train']} ({s['train']['split']}), "
        f"dev {report['examples']['dev']} ({s['dev']['split']}), held-out {report['examples']['heldout']} "
        f"({s['heldout']['split']}); seed {s['seed']}; budget {s['budget'] or 'auto'}.",
        "",
        f"Optimizer wall time {o['wall_seconds']} s; LLM calls in this run: {o['llm_calls']['task']} by the "
        f"program, {o['llm_calls']['proposer']} by the proposer (cached and replayed calls are free).",
        "",
        "| set | metric | before | after |",
        "| --- | --- | --- | --- |",
    ]
    for name, scores in report["scores"].items():
        for key, label in _SCORES.items():
            lines.append(f"| {name} | {label} | {scores['before'][key]:.4f} | {scores['after'][key]:.4f} |")
    lines += ["", "BLEU is corpus sacrebleu (0-100); METEOR and ROUGE are 0-1; `metric` is the mean of the "
              "per-example optimization metric.", "", "## Instructions", ""]
    for stage, texts in report["instructions"].items():
        lines += [f"### {stage}", "", _change(stage, texts["before"], texts["after"]), ""]
    lines.append(f"Compiled program: `{report['program_state']}` (fingerprint {report['fingerprint']}); "
                 f"run it with `drp run --program-state {report['program_state']}`.")
    atomic_write(out / "report.md", "\n".join(lines) + "\n")
