"""Results in a document come from the grid's `results.md`, never typed by hand: a block

    <!-- results: runs/GRID/results.md -->
    ...
    <!-- /results -->

in a Markdown file (the README) is refreshed by `drp publish FILE` with the tables of the file it names."""

from __future__ import annotations

import re
from pathlib import Path

from ..runner import atomic_write

_BLOCK = re.compile(r"(?P<open><!-- results: (?P<source>[^\s>]+) -->\n)(?P<body>.*?)(?P<close><!-- /results -->)",
                    re.DOTALL)


def _tables(results_md: str) -> str:
    """A results.md without its title, its headings two levels down, to sit under a document's own heading."""
    lines = results_md.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join("##" + line if line.startswith("#") else line for line in lines).strip()


def publish(document: Path) -> list[Path]:
    """Refresh every results block of `document` from the results.md it names (relative to the document);
    returns those files. A block naming a missing file is an error: run its grid first."""
    text = document.read_text(encoding="utf-8")
    sources: list[Path] = []

    def refreshed(match: re.Match) -> str:
        source = document.parent / match["source"]
        if not source.is_file():
            raise FileNotFoundError(f"{document}: a results block names {match['source']}, which does not exist: "
                                    "run its grid (`drp experiment ... --out ...`) first")
        sources.append(source)
        return f"{match['open']}{_tables(source.read_text(encoding='utf-8'))}\n{match['close']}"

    updated = _BLOCK.sub(refreshed, text)
    if not sources:
        raise ValueError(f"{document}: no results block (<!-- results: PATH/results.md --> ... <!-- /results -->)")
    if updated != text:
        atomic_write(document, updated)
    return sources
