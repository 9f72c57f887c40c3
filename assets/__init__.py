"""Files drpkit needs besides its code, all under one cache folder: prepared model weights, NLTK data, DSPy's
answers. Nothing here imports the rest of drpkit."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DRPKIT_CACHE"


def cache_dir(kind: str) -> Path:
    """`$DRPKIT_CACHE/<kind>`, by default `$XDG_CACHE_HOME/drpkit/<kind>` (`~/.cache/drpkit/<kind>`)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drpkit")
    return Path(root).expanduser() / kind
