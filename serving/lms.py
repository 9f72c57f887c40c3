"""How each stage reaches its LM: one spec per stage (storm's habit: one LM per stage, in one config object)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import dspy

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_SERVED_NAME = "drp-default"
DEFAULT_API_BASE = f"http://{LOOPBACK}:{DEFAULT_PORT}/v1"
MAX_MODEL_LEN = 8192  # tokens of prompt and answer a request may hold (the servers drpkit starts)

# vLLM's repetition detection: an answer whose last 8-64 tokens repeat twice before, back to back, is a loop
# that would run to max_tokens; it ends there (finish reason "repetition"), unparsed, and the stage retries.
LOOP_DETECTION = {"max_pattern_size": 64, "min_pattern_size": 8, "min_count": 3}


class _LoopEnded(logging.Filter):
    """LiteLLM warns "Unmapped finish_reason 'repetition'" on every answer that loop detection ended, twice over;
    the stage already retries such an answer and the run records it, so the warning only floods a run's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "finish_reason 'repetition'" not in record.getMessage()


LOOP_ENDED_WARNINGS = _LoopEnded()


def repetition_penalty(penalty: float) -> dict[str, Any]:
    """A repetition penalty as both engines take it: vLLM's `repetition_penalty`, and llama.cpp's `repeat_penalty`
    over all of the request's tokens (`repeat_last_n`). The rule is the same: a token of the prompt or of the answer
    so far has its logit divided by `penalty` (multiplied, when negative). Each server ignores the other's fields."""
    return {"repetition_penalty": penalty, "repeat_penalty": penalty, "repeat_last_n": MAX_MODEL_LEN}


@dataclass(frozen=True)
class LMSpec:
    """One OpenAI-compatible endpoint and its sampling settings (the paper: temperature 0, top_p 0.95). A field
    marked `neutral` changes no result (where the server listens, how long a request may wait)."""

    model: str = field(default=DEFAULT_SERVED_NAME, metadata={"help": "served model name of every stage"})
    api_base: str = field(default=DEFAULT_API_BASE, metadata={
        "help": "the server of every stage; several, comma-separated, are replicas that share the requests",
        "neutral": True})
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature of every stage"})
    max_tokens: int = field(default=1024, metadata={"help": "the longest answer of a stage call, in tokens"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling of every stage"})
    api_key: str = field(default="EMPTY", metadata={"secret": True})
    # a CPU server computes ~40 tokens/s in all: a request queued behind a batch of long prompts waits minutes,
    # and one that times out is sent again from the start
    timeout: float = field(default=1800.0, metadata={
        "help": "seconds an LM request may take, its wait included", "neutral": True})
    stop_loops: bool = field(default=True, metadata={
        "help": "end an answer that loops (a span of 8-64 tokens three times in a row: vLLM's repetition "
                "detection) instead of decoding it to max_tokens; the stage retries it"})

    @property
    def servers(self) -> tuple[str, ...]:
        """The base URLs of `api_base`: one server, or the replicas of a stage."""
        return tuple(base.strip() for base in self.api_base.split(",") if base.strip())

    def build(self) -> dspy.LM:
        model = f"hosted_vllm/{self.model}"
        sampling = {"temperature": self.temperature, "max_tokens": self.max_tokens, "top_p": self.top_p}
        extra_body = {"repetition_detection": LOOP_DETECTION} if self.stop_loops else {}
        if len(self.servers) > 1:  # litellm's Router spreads the requests; the engine owns the connection
            from .replicas import ReplicaEngine

            engine = ReplicaEngine(model, self.servers, self.api_key, self.timeout, extra_body)
            return dspy.LM(model, engine=engine, **sampling)
        # DSPy imports litellm at the first call; sixteen worker threads making their first calls at once found it
        # half-initialized ("partially initialized module 'litellm'"): imported here, in the thread that builds
        import litellm  # noqa: F401

        return dspy.LM(model, api_base=self.api_base, api_key=self.api_key, timeout=self.timeout, num_retries=3,
                       **sampling, **({"extra_body": extra_body} if extra_body else {}))

    def describe(self) -> dict[str, Any]:
        """The settings for run records and tables: never the API key."""
        return {key: value for key, value in asdict(self).items() if key != "api_key"}


@dataclass(frozen=True)
class StageLMs:
    """The LM of every stage: `default`, unless `stages` gives the stage its own (the paper's setting: a
    reasoning LM extracts and validates, an instruct LM summarizes and generates)."""

    default: LMSpec = field(default_factory=LMSpec)
    stages: Mapping[str, LMSpec] = field(default_factory=dict)

    def __getitem__(self, stage: str) -> LMSpec:
        return self.stages.get(stage, self.default)

    def with_stage(self, stage: str, spec: LMSpec) -> StageLMs:
        return replace(self, stages={**self.stages, stage: spec})

    def with_settings(self, **changes: Any) -> StageLMs:
        """The same LMs with `changes` (e.g. temperature) applied to every stage."""
        return StageLMs(replace(self.default, **changes),
                        {stage: replace(spec, **changes) for stage, spec in self.stages.items()})

    def specs(self, stages: Iterable[str]) -> dict[str, LMSpec]:
        return {stage: self[stage] for stage in stages}

    def build(self, stages: Iterable[str]) -> dict[str, dspy.LM]:
        """One dspy.LM per distinct spec, shared by the stages that use it."""
        specs = self.specs(stages)
        built = {spec: spec.build() for spec in dict.fromkeys(specs.values())}
        return {stage: built[spec] for stage, spec in specs.items()}

    def describe(self, stages: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Each stage's LM settings, for run records (without the API key)."""
        return {stage: spec.describe() for stage, spec in self.specs(stages).items()}
