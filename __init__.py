"""drpkit: Difference-aware Reasoning Personalization (DRP) for review generation, as a DSPy program.

The subsystems, each a folder, lower ones first: `assets` (cache folder, packaged model weights, NLTK data),
`signatures` (one per stage), `data` (DPL schema, retrieval, Step 0), `programs` (stage modules, the DRP program,
its methods), `serving` (each stage's LM, the vLLM server), `metrics`, `runner` (a program over a split),
`optimizers`, `experiments` (grids, tables, feature analysis), `cli` (`drp`). The names below are the public API;
they load on first use, so that `drp serve` does not pay for DSPy."""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

# An offline toolkit: litellm's bundled model-cost map, not a download attempt (and its warnings) on every
# import; local servers reached directly, never through a proxy set for the outside world.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

_API = {
    "DRP": "programs", "DRPConfig": "programs", "METHODS": "programs", "STAGES": "programs",
    "load_reviews": "data", "build_task": "data.tasks",
    "LMSpec": "serving", "StageLMs": "serving",
    "score": "metrics", "METRICS": "metrics",
    "run": "runner", "RunSettings": "runner", "evaluate_file": "runner",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'drpkit' has no attribute {name!r}")
    return getattr(import_module(f".{_API[name]}", __name__), name)
