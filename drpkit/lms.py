"""Every LM the program uses, configured in one place: one spec per stage, all pointing at vLLM servers."""

from __future__ import annotations

import os
import re
from pathlib import Path
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import dspy

from drpkit.programs.stages import STAGES

# Offline toolkit: litellm's bundled model-cost map, not a download attempt on every start.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Local servers are reached directly, never through a proxy set for the outside world.
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

_THINK = re.compile(r"^.*?</think>\s*|<think>.*?</think>\s*", re.DOTALL)


def strip_thinking(completion: str) -> str:
    """Drop a reasoning model's `<think>` block, for servers started without a reasoning parser."""
    return _THINK.sub("", completion, count=1) if "</think>" in completion else completion


class ThinkingChatAdapter(dspy.ChatAdapter):
    """ChatAdapter that parses R1-style answers (`<think>...</think>` then the fields)."""

    def parse(self, signature, completion: str) -> dict[str, Any]:
        return super().parse(signature, strip_thinking(completion))

    def _make_json_adapter_fallback(self):
        return ThinkingJSONAdapter()


class ThinkingJSONAdapter(dspy.JSONAdapter):
    """JSONAdapter that parses R1-style answers; the default, as small models keep JSON fields apart best."""

    def parse(self, signature, completion: str) -> dict[str, Any]:
        return super().parse(signature, strip_thinking(completion))


ADAPTERS = {"json": ThinkingJSONAdapter, "chat": ThinkingChatAdapter}


def configure_dspy(adapter: str) -> None:
    """The process-wide settings of every command that calls LMs: the adapter, and the disk cache under
    $DRPKIT_CACHE (default ~/.cache/drpkit), so that a rerun reuses every answer it already got."""
    cache = Path(os.environ.get("DRPKIT_CACHE", Path.home() / ".cache" / "drpkit")) / "dspy"
    dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(cache))
    dspy.configure(adapter=ADAPTERS[adapter]())


@dataclass(frozen=True)
class LMSpec:
    """One OpenAI-compatible endpoint and its sampling settings (the paper: temperature 0, top_p 0.95)."""

    model: str = "drp-default"
    api_base: str = "http://127.0.0.1:8000/v1"
    temperature: float = 0.0
    max_tokens: int = 1024
    top_p: float = 0.95
    api_key: str = "EMPTY"
    timeout: float = 600.0

    def build(self) -> dspy.LM:
        return dspy.LM(
            f"hosted_vllm/{self.model}", api_base=self.api_base, api_key=self.api_key,
            temperature=self.temperature, max_tokens=self.max_tokens, top_p=self.top_p,
            timeout=self.timeout, num_retries=3,
        )


@dataclass(frozen=True)
class StageLMs:
    """The paper's setting: a reasoning LM extracts and validates, an instruct LM summarizes and generates."""

    extract: LMSpec = field(default_factory=LMSpec)
    validate: LMSpec = field(default_factory=LMSpec)
    summarize: LMSpec = field(default_factory=LMSpec)
    generate: LMSpec = field(default_factory=LMSpec)

    @classmethod
    def single(cls, spec: LMSpec) -> StageLMs:
        return cls(spec, spec, spec, spec)

    def with_overrides(self, **specs: LMSpec | None) -> StageLMs:
        return replace(self, **{stage: spec for stage, spec in specs.items() if spec is not None})

    def build(self) -> dict[str, dspy.LM]:
        """One dspy.LM per distinct spec, shared by the stages that use it."""
        built: dict[LMSpec, dspy.LM] = {}
        for stage in STAGES:
            spec = getattr(self, stage)
            if spec not in built:
                built[spec] = spec.build()
        return {stage: built[getattr(self, stage)] for stage in STAGES}

    def describe(self) -> dict[str, dict[str, Any]]:
        """The settings of each stage's LM, for run records (without the API key)."""
        return {stage: {k: v for k, v in asdict(getattr(self, stage)).items() if k != "api_key"} for stage in STAGES}
