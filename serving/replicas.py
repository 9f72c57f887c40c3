"""One stage served by several OpenAI-compatible servers (replicas): litellm's Router behind a DSPy engine.

Requests whose prompts begin alike go to the same replica, so that its prefix cache serves what they share
(with inputs first, Extract and Validate of an item share the item and its reviews; Summarize and Generate
share the past reviews). The key is the start of the prompt's last message; litellm's session affinity pins
each key to the replica that served it first, and spreads new keys over the replicas."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import litellm
from dspy.clients.engines.litellm_engine import LiteLLMEngine

AFFINITY_CHARS = 1000  # the prompt start that keys a replica: longer than the task-independent part of a prompt
AFFINITY_TTL = 3600  # seconds a prompt start stays pinned to its replica


def affinity_key(messages: Sequence[dict[str, Any]]) -> str:
    """The replica key of a request: a digest of the start of its last message."""
    content = str(messages[-1].get("content", "")) if messages else ""
    return hashlib.sha256(content[:AFFINITY_CHARS].encode()).hexdigest()[:16]


class ReplicaEngine(LiteLLMEngine):
    """A DSPy engine (`dspy.LM(..., engine=ReplicaEngine(...))`) that sends each request to one of `api_bases`
    through a `litellm.Router`. The engine owns the connection: the key, the timeout and the request body's
    extras (vLLM's repetition detection) are set here, not on the LM."""

    complete_legacy = None  # DSPy's typed path: complete(Request) -> Response

    def __init__(self, model: str, api_bases: Sequence[str], api_key: str = "EMPTY", timeout: float = 600.0,
                 extra_body: dict[str, Any] | None = None, num_retries: int = 3):
        super().__init__()
        if len(api_bases) < 2:
            raise ValueError("replicas need at least two servers")
        self.model = model
        self.api_bases = tuple(api_bases)
        self.extra_body = dict(extra_body or {})
        self.router = litellm.Router(
            model_list=[{"model_name": model, "litellm_params": {
                "model": model, "api_base": base, "api_key": api_key, "timeout": timeout}} for base in self.api_bases],
            optional_pre_call_checks=["session_affinity"], deployment_affinity_ttl_seconds=AFFINITY_TTL,
            num_retries=num_retries, retry_after=1,
        )
        # litellm's affinity check runs on its async path: one event loop, in its own thread, serves every caller
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="replica-router", daemon=True).start()

    def complete(self, request):
        data = self._arguments(request)
        data.pop("cache", None)
        data.pop("num_retries", None)  # the Router retries, on another replica if one fails
        if self.extra_body or "extra_body" in data:  # a call's own extras (a stage's min_tokens) join the engine's
            data["extra_body"] = {**self.extra_body, **data.get("extra_body", {})}
        data["metadata"] = {"session_id": affinity_key(data["messages"])}
        raw = asyncio.run_coroutine_threadsafe(self.router.acompletion(**data), self._loop).result()
        return self._response(raw, request)

    def __repr__(self) -> str:
        return f"ReplicaEngine({self.model!r}, {list(self.api_bases)})"
