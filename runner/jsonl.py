"""JSON Lines files that survive a kill: every row is appended as one complete line, unbuffered, and synced;
a reader sets aside a last line cut off mid-write (kept in `<file>.cut`, reported once) instead of
failing on it, so the rows before it are kept and the file can be appended to again."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import BadFile, WriteFailed

CUT_SUFFIX = ".cut"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of `path` (none if it does not exist). A malformed line other than a cut-off last one is an
    error naming the file and line."""
    return [row for _, row in numbered_rows(Path(path))]


def numbered_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, row)` for each row of `path`, as `read_jsonl` reads them."""
    path = Path(path)
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    if tail.strip():
        tail = _repair_tail(path, text, tail)
    for number, line in enumerate([*lines, tail] if tail else lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise BadFile(f"{path}:{number}: not valid JSON ({error.msg}); fix or remove that line") from None
        if not isinstance(row, dict):
            raise BadFile(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def _repair_tail(path: Path, text: str, tail: str) -> str:
    """A last line without its newline: complete it if it is a whole row, else move it to `<file>.cut`."""
    try:
        json.loads(tail)
    except json.JSONDecodeError:
        aside = path.with_name(path.name + CUT_SUFFIX)
        try:  # the cut line is kept before it leaves the file: a failure here loses nothing
            with open(aside, "a", encoding="utf-8") as handle:
                handle.write(tail + "\n")
            with open(path, "r+", encoding="utf-8") as handle:
                handle.truncate(len(text.encode("utf-8")) - len(tail.encode("utf-8")))
        except OSError as error:
            raise WriteFailed(f"{path}: its last line was cut off mid-write, and setting it aside in {aside.name} "
                              f"failed ({error.strerror or error}); free some space and rerun") from error
        print(f"{path}: its last line was cut off mid-write (a killed process?); set aside in "
              f"{path.name}{CUT_SUFFIX}, the rows before it are kept", file=sys.stderr)
        return ""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n")
    return tail


class JsonlWriter:
    """Appends rows to a JSON Lines file from any thread; use as a context manager. A row that cannot be written
    (a full disk) raises WriteFailed: the rows before it are kept, and a part of it is set aside on the next read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        read_jsonl(self.path)  # a cut-off last line is set aside before anything is appended after it
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, row: dict[str, Any]) -> None:
        line = memoryview((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        with self._lock:
            try:
                while line:  # unbuffered: nothing is left to write again at close after a failure
                    line = line[os.write(self._fd, line):]
                os.fsync(self._fd)
            except OSError as error:
                raise WriteFailed(f"could not append to {self.path} ({error.strerror or error}); the rows written "
                                  "before are kept: make room, then rerun the same command to go on") from error

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
