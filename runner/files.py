"""Output files that survive a kill: whole-file outputs are written beside their place and renamed over it, and
a folder being written to is locked so that a second process cannot write into it as well."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import FolderBusy, WriteFailed

LOCK = ".lock"


@contextlib.contextmanager
def replaced(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, with its suffix (for writers that pick a format by it), to write the new
    version to: synced and renamed over `path` when the block ends, so that `path` is never half written."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except WriteFailed:
        raise
    except OSError as error:
        raise WriteFailed(f"could not write {path} ({error.strerror or error}); its previous version, if any, is "
                          "unchanged") from error
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, text: str) -> None:
    """A whole-file output (`replaced`)."""
    with replaced(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, value: Any) -> None:
    """A whole-file JSON output (`replaced`)."""
    atomic_write(path, json.dumps(value, indent=2, ensure_ascii=False))


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock file while writing into it; refuse (FolderBusy, naming the holder's pid) when another
    process holds it. The lock is the kernel's (flock) on an open file, so a process that dies, even killed,
    releases it: the file left behind locks nothing."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise WriteFailed(f"cannot write into {folder} ({error.strerror or error}); choose another output "
                          "folder") from error
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderBusy(f"{folder} is in use by another drp process (pid {holder}); wait for it to end, stop "
                             "it, or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
