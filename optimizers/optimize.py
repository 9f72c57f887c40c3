"""Instruction optimization of chosen DRP stages against BLEU/ROUGE-L on a dev split (MIPROv2, COPRO, GEPA)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dspy

from ..data.loading import ReviewData
from ..data.representatives import Embedder
from ..metrics import score
from ..programs import DRP, STAGES, stage_names
from ..runner import CONCURRENCY, ProgramSettings, check_settings, folder_lock, replaced
from .examples import Portion, make_examples
from .logs import CandidateLog, EvaluationLog, LoggedDRP, stage_instructions
from .objective import ReviewMetric
from .report import write_report

OPTIMIZERS = ("mipro", "copro", "gepa")
PROGRAM, SETTINGS, EVALUATIONS, CANDIDATES, GEPA_DIR = (
    "program.json", "optimize.json", "evaluations.jsonl", "candidates.jsonl", "gepa")
# MIPROv2 scores candidates on minibatches of this size once the dev set is larger (its default).
MINIBATCH = 35


@dataclass(frozen=True, kw_only=True)
class OptimizeSettings(ProgramSettings):
    """What defines an optimization's results; rerunning into a folder made with other settings is refused,
    except for the budget: a larger one goes on from the evaluations already made."""

    data: str
    stages: tuple[str, ...] = ("generate",)
    optimizer: Literal["mipro", "copro", "gepa"] = "mipro"
    metric: str = "mix"
    bleu_weight: float = 0.5
    train: Portion = Portion("train", 20)
    dev: Portion = Portion("val", 30)
    heldout: Portion = Portion("val", 30)
    budget: int | None = None  # MIPROv2 trials, COPRO rounds, GEPA metric calls; None: auto light / 2 rounds
    candidates: int = 6  # instructions proposed per stage (MIPROv2) or per round (COPRO)
    demos: int = 0  # bootstrapped demos per stage (MIPROv2 only); 0: instructions only
    seed: int = 0
    shuffle: bool = True  # False: each split's users in file order
    proposer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stages or set(self.stages) - set(STAGES):
            raise ValueError(f"stages {self.stages}: choose among {STAGES}")
        if set(self.stages) - set(stage_names(self.program)):
            raise ValueError(f"stages {self.stages}: method {self.method}'s program has {stage_names(self.program)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: expected one of {OPTIMIZERS}")


class MIPROv2(dspy.MIPROv2):
    """MIPROv2 that does not bootstrap demos it would discard: in zero-shot mode (no demos) with a proposer
    that is not shown demos, bootstrapping would only run the whole program over the train set."""

    def _bootstrap_fewshot_examples(self, program: Any, trainset: list, seed: int, teacher: Any,
                                    **options: Any) -> list | None:
        if options["max_bootstrapped_demos"] == 0 and options["max_labeled_demos"] == 0:
            return None
        return super()._bootstrap_fewshot_examples(program, trainset, seed, teacher, **options)


def optimize_only(program: DRP, stages: tuple[str, ...]) -> None:
    """Freeze the other stages: DSPy leaves the parameters of a sub-module marked compiled out of
    `named_predictors()`, so optimizers neither see nor change them (and saving skips them: unfreeze first)."""
    for name, stage in program.stages().items():
        stage._compiled = name not in stages


def load_compiled(program: DRP, path: str | Path, lms: Mapping[str, dspy.LM]) -> None:
    """Load a compiled state (`drp optimize`'s program.json) into `program` and attach the configured LMs (a run
    records the state's `DRP.fingerprint`)."""
    program.load(path)
    program.set_stage_lms(lms)


def save_compiled(program: DRP, path: Path) -> None:
    """Save instructions and demos, not LMs: those are the run's to choose (`load_compiled` attaches them)."""
    state = program.deepcopy()
    state.set_lm(None)
    with replaced(path) as tmp:  # never half written
        state.save(tmp)


def _compile(settings: OptimizeSettings, program: DRP, metric: ReviewMetric, proposer: dspy.LM,
             train: list[dspy.Example], dev: list[dspy.Example], log: EvaluationLog, out: Path,
             concurrency: int) -> DRP:
    budget, seed = settings.budget, settings.seed
    if settings.optimizer == "mipro":
        optimizer = MIPROv2(
            metric=metric, prompt_model=proposer, task_model=program.generate.predictors()[0].lm,
            max_bootstrapped_demos=settings.demos, max_labeled_demos=0,  # labeled demos: no stage's fields
            auto="light" if budget is None else None, num_candidates=None if budget is None else settings.candidates,
            num_threads=concurrency, seed=seed,
        )
        # The proposer sees the program's code and a tip; not demos or a data summary, whose histories
        # overflow a small local model's context.
        return optimizer.compile(program, trainset=train, valset=dev, num_trials=budget,
                                 minibatch=len(dev) > MINIBATCH, minibatch_size=MINIBATCH,
                                 data_aware_proposer=False, fewshot_aware_proposer=False)
    if settings.optimizer == "copro":
        optimizer = dspy.COPRO(prompt_model=proposer, metric=metric, breadth=settings.candidates, depth=budget or 2)
        return optimizer.compile(program, trainset=dev, eval_kwargs={"num_threads": concurrency})
    optimizer = dspy.GEPA(
        metric=metric, auto="light" if budget is None else None, max_metric_calls=budget, reflection_lm=proposer,
        num_threads=concurrency, log_dir=str(out / GEPA_DIR), seed=seed,
    )
    log.replay = False  # GEPA reflects on traces, which a replayed prediction lacks; it resumes from log_dir
    try:
        return optimizer.compile(program, trainset=train, valset=dev)
    finally:
        log.replay = True


def _evaluate(program: DRP, examples: list[dspy.Example], metric: ReviewMetric, concurrency: int) -> dict[str, Any]:
    """Corpus scores (drpkit.metrics) and the mean optimization metric of `program` on `examples`."""
    result = dspy.Evaluate(devset=examples, metric=metric, num_threads=concurrency, display_progress=True)(program)
    reviews = [getattr(prediction, "review", None) for _, prediction, _ in result.results]
    scores = score([r or "" for r in reviews], [e.reference for e in examples], missing=reviews.count(None))
    return scores.as_dict() | {"metric": result.score / 100}


def optimize(data: ReviewData, settings: OptimizeSettings, lms: Mapping[str, dspy.LM], proposer: dspy.LM,
             out: Path, concurrency: int = CONCURRENCY, embedder: Embedder | None = None) -> dict[str, Any]:
    """Optimize the instructions of `settings.stages` on the dev examples; write program.json (the compiled
    state), candidates.jsonl, evaluations.jsonl, report.json and report.md into `out`; return the report.

    Rerunning into `out` replays the predictions already made (and GEPA resumes from its log_dir), so an
    interrupted run goes on where it stopped. `out` is locked meanwhile: a second optimization into it is refused."""
    with folder_lock(out):
        return _optimize(data, settings, lms, proposer, out, concurrency, embedder)


def _optimize(data: ReviewData, settings: OptimizeSettings, lms: Mapping[str, dspy.LM], proposer: dspy.LM,
              out: Path, concurrency: int, embedder: Embedder | None) -> dict[str, Any]:
    check_settings(out / SETTINGS, settings)
    c = settings
    train, dev, heldout = make_examples(data, [c.train, c.dev, c.heldout], c, c.seed, c.shuffle)
    metric = ReviewMetric(c.metric, c.bleu_weight)
    log = EvaluationLog(out / EVALUATIONS)
    program = LoggedDRP(c.program, log, embedder)
    program.set_stage_lms(lms)
    optimize_only(program, c.stages)

    candidates = CandidateLog(out / CANDIDATES, c.stages, {"dev": dev, "train": train})
    start, calls_before = time.perf_counter(), log.calls
    with dspy.context(callbacks=[candidates]), dspy.track_usage() as proposer_usage:
        compiled = _compile(c, program, metric, proposer, train, dev, log, out, concurrency)
    seconds = time.perf_counter() - start
    task_calls = log.calls - calls_before
    optimize_only(compiled, STAGES)
    optimize_only(program, STAGES)
    save_compiled(compiled, out / PROGRAM)

    evaluations = {"dev": dev, "heldout": heldout}
    scores = {name: {"before": _evaluate(program, examples, metric, concurrency),
                     "after": _evaluate(compiled, examples, metric, concurrency)}
              for name, examples in evaluations.items() if examples}
    report = {
        "settings": c.record(),
        "program_state": str(out / PROGRAM),
        "fingerprint": compiled.fingerprint(),
        "optimizer": {
            "name": c.optimizer,
            "wall_seconds": round(seconds, 1),
            "llm_calls": {"task": task_calls,
                          "proposer": sum(len(entries) for entries in proposer_usage.usage_data.values())},
        },
        "examples": {"train": len(train), "dev": len(dev), "heldout": len(heldout)},
        "scores": scores,
        "instructions": {stage: {"before": before, "after": stage_instructions(compiled)[stage]}
                         for stage, before in stage_instructions(program).items()},
    }
    write_report(out, report)
    return report
