"""What an optimization run keeps on disk so that an interrupted run continues instead of starting over:
every program prediction (evaluations.jsonl, replayed on a rerun) and every evaluated candidate with its
score (candidates.jsonl)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from ..data.representatives import Embedder
from ..data.tasks import ReviewTask
from ..programs import DRP, DRPConfig, Usage
from ..runner import JsonlWriter, read_jsonl


def stage_instructions(program: DRP) -> dict[str, str]:
    """The instruction of each stage's predictor."""
    return {name: stage.predictors()[0].signature.instructions for name, stage in program.stages().items()}


class EvaluationLog:
    """Predictions keyed by (program fingerprint, sample), appended as they are made. With `replay` on, a
    prediction already in the log is returned instead of running the program again; `calls` counts the LM
    calls of the predictions made by this process."""

    def __init__(self, path: Path):
        self.rows = {(row["candidate"], row["sample"]): row for row in read_jsonl(path)}
        self.sink = JsonlWriter(path)
        self.replay = True
        self.calls = 0
        self.lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> EvaluationLog:
        return self  # the copies optimizers make of the program share one log

    def get(self, candidate: str, sample: str) -> dict[str, Any] | None:
        return self.rows.get((candidate, sample)) if self.replay else None

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.rows[(row["candidate"], row["sample"])] = row
            self.calls += Usage.sum([row["usage"]]).total()["calls"]
        self.sink.append(row)


class LoggedDRP(DRP):
    """DRP that logs each prediction to an EvaluationLog and replays logged ones: a rerun of an optimization
    costs no LM call for the (instructions, sample) pairs it has already evaluated."""

    def __init__(self, config: DRPConfig, log: EvaluationLog, embedder: Embedder | None = None):
        super().__init__(config, embedder)
        self.log = log

    def forward(self, task: ReviewTask) -> dspy.Prediction:
        candidate, sample = self.fingerprint(), str(task.key)
        if row := self.log.get(candidate, sample):
            return dspy.Prediction(review=row["review"], summary=row["summary"], failures=row["failures"],
                                   comparisons=[], usage={}, config=row["config"], replayed=True)
        with dspy.context(usage_tracker=None):  # counted in the log; an enclosing tracker sees only the optimizer's calls
            prediction = super().forward(task)
        self.log.add({"candidate": candidate, "sample": sample, "review": prediction.review,
                      "summary": prediction.summary, "failures": prediction.failures, "usage": prediction.usage,
                      "config": prediction.config})
        return prediction


class CandidateLog(BaseCallback):
    """A DSPy callback writing each evaluation an optimizer runs to candidates.jsonl: the instructions of the
    optimized stages, the mean metric score, and which examples (`sets` names them: train, dev); an
    evaluation already in the file, as on a rerun, is not written again."""

    def __init__(self, path: Path, stages: tuple[str, ...], sets: dict[str, list[dspy.Example]]):
        self.stages = stages
        self.sets = {name: [str(e.task.key) for e in examples] for name, examples in sets.items()}
        self.seen = {(row["candidate"], tuple(row["samples"])) for row in read_jsonl(path)}
        self.sink = JsonlWriter(path)
        self.started: dict[str, tuple[dspy.Module, list[dspy.Example]]] = {}
        self.lock = threading.Lock()

    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.started[call_id] = (inputs["program"], inputs.get("devset") or instance.devset)

    def on_evaluate_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        program, devset = self.started.pop(call_id)
        if outputs is None:
            return
        samples = tuple(str(example.task.key) for example in devset)
        candidate = program.fingerprint()
        with self.lock:
            if (candidate, samples) in self.seen:
                return
            self.seen.add((candidate, samples))
            scores = [float(score) for *_, score in outputs.results]
            instructions = stage_instructions(program)
            row = {
                "candidate": candidate,
                "set": self._set_name(samples),
                "n": len(samples),
                "score": sum(scores) / len(scores),
                "instructions": {stage: instructions[stage] for stage in self.stages},
                "samples": list(samples),
            }
        self.sink.append(row)

    def _set_name(self, samples: tuple[str, ...]) -> str:
        for name, keys in self.sets.items():
            if set(samples) <= set(keys):
                return name if len(samples) == len(keys) else f"{name} minibatch"
        return "mixed"
