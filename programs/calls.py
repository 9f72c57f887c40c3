"""Calling a predictor so that an unparseable or unusable answer is retried, counted and reported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

RETRY_TEMPERATURE = 0.7


class StageFailure(RuntimeError):
    """A stage gave no usable answer after all its attempts; `problems` says why, one per attempt."""

    def __init__(self, stage: str, problems: list[str]):
        self.stage = stage
        self.problems = problems
        super().__init__(f"{stage} failed after {len(problems)} attempt(s): {problems[-1]}")

    def record(self) -> dict[str, Any]:
        return {"stage": self.stage, "problems": self.problems}


@dataclass
class Usage:
    """LM requests and tokens, per stage, as counted by dspy's usage tracker (cache hits cost nothing)."""

    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    retries: list[dict[str, str]] = field(default_factory=list)  # every rejected answer, also when a retry worked

    def add(self, stage: str, tracker: Any) -> None:
        totals = self.stages.setdefault(stage, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        for entries in tracker.usage_data.values():
            for entry in entries:
                totals["calls"] += 1
                totals["prompt_tokens"] += int(entry.get("prompt_tokens") or 0)
                totals["completion_tokens"] += int(entry.get("completion_tokens") or 0)

    def total(self) -> dict[str, int]:
        keys = ("calls", "prompt_tokens", "completion_tokens")
        return {k: sum(s[k] for s in self.stages.values()) for k in keys}


def call_stage(
    stage: str,
    predictor: dspy.Module,
    usage: Usage,
    attempts: int = 3,
    check: Callable[[dspy.Prediction], str | None] | None = None,
    **inputs: Any,
) -> dspy.Prediction:
    """Run `predictor`, retrying (at a higher temperature, off the cache) while the answer does not
    parse or `check` names a problem with it; raise StageFailure with every problem seen."""
    problems: list[str] = []
    for attempt in range(attempts):
        config = {} if attempt == 0 else {"temperature": RETRY_TEMPERATURE, "rollout_id": attempt}
        with dspy.track_usage() as tracker:
            try:
                prediction = predictor(**inputs, config=config)
            except AdapterParseError as error:
                problems.append(f"unparseable answer: {str(error).splitlines()[0][:200]}")
                usage.retries.append({"stage": stage, "problem": problems[-1]})
                continue
            finally:
                usage.add(stage, tracker)
        problem = check(prediction) if check else None
        if problem is None:
            return prediction
        answer = {k: str(v)[:300] for k, v in prediction.items() if k != "reasoning"}
        problems.append(f"{problem}: {answer}")
        usage.retries.append({"stage": stage, "problem": problems[-1]})
    raise StageFailure(stage, problems)
