"""Calling a predictor so that an unparseable or unusable answer is retried, counted and reported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from .usage import Usage

RETRY_TEMPERATURE = 0.7


class StageFailure(RuntimeError):
    """A stage gave no usable answer after all its attempts; `problems` says why, one per attempt."""

    def __init__(self, stage: str, problems: list[str]):
        self.stage = stage
        self.problems = problems
        super().__init__(f"{stage} failed after {len(problems)} attempt(s): {problems[-1]}")

    def record(self) -> dict[str, Any]:
        return {"stage": self.stage, "problems": self.problems}


def call_stage(
    stage: str,
    predictor: dspy.Module,
    usage: Usage,
    attempts: int = 3,
    check: Callable[[dspy.Prediction], str | None] | None = None,
    sampling: dict[str, Any] | None = None,
    soft_check: Callable[[dspy.Prediction], str | None] | None = None,
    fallback: dict[str, Any] | None = None,
    fallback_after: Callable[[str], bool] = lambda problem: True,
    **inputs: Any,
) -> dspy.Prediction:
    """Run `predictor`, retrying (at a higher temperature, off the cache) while the answer does not
    parse or `check` names a problem with it; raise StageFailure with every problem seen. A problem that
    `soft_check` names is worth a retry but is no failure: when no attempt passes it, the last answer that
    passed `check` is returned. `sampling` (the stage's `max_tokens`, `extra_body`) overrides the LM's settings;
    after an answer that fails `check` with a problem that `fallback_after` names as one the constraint may have
    caused, the attempts left use `fallback` instead, when given: sampling without that constraint (a length floor
    forces a model that has nothing more to say into loops; it causes no refusal, which is retried under it)."""
    problems: list[str] = []
    acceptable: dspy.Prediction | None = None
    sampling = sampling or {}
    for attempt in range(attempts):
        config = sampling if attempt == 0 else {**sampling, "temperature": RETRY_TEMPERATURE, "rollout_id": attempt}
        with dspy.track_usage() as tracker:
            try:
                prediction = predictor(**inputs, config=config)
            except AdapterParseError as error:
                problems.append(f"unparseable answer: {str(error).splitlines()[0][:200]}")
                usage.retries.append({"stage": stage, "problem": problems[-1]})
                continue
            finally:
                usage.add_tracked(stage, tracker)
        problem = check(prediction) if check else None
        if problem is None:
            acceptable = prediction
            problem = soft_check(prediction) if soft_check else None
            if problem is None:
                return prediction
        if fallback is not None and acceptable is None and fallback_after(problem):
            sampling = fallback
        answer = {k: str(v)[:300] for k, v in prediction.items() if k != "reasoning"}
        problems.append(f"{problem}: {answer}")
        usage.retries.append({"stage": stage, "problem": problems[-1]})
    if acceptable is not None:
        return acceptable
    raise StageFailure(stage, problems)
