"""Errors a user can fix, as opposed to bugs: `drp` prints their message (which names the problem and the fix)
on one line, without a traceback, and exits with their `exit_code`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class ExpectedError(Exception):
    """Something about the user's files, folders or machine, not a bug."""

    exit_code = 1


class UsageError(ExpectedError, ValueError):
    """What the command line or a grid file asks for cannot be done (exit 2, as argparse's own errors)."""

    exit_code = 2


class SettingsRefused(ExpectedError, ValueError):
    """An output folder holds results made with other settings: resuming into it would mix them."""


class BadFile(ExpectedError, ValueError):
    """A file drp reads is not what it should be (a malformed line, a missing field); the message says where."""


class FolderBusy(ExpectedError):
    """Another process is writing into the output folder."""


class WriteFailed(ExpectedError, OSError):
    """A file could not be written (a full disk, say); what was written before is kept."""


class Abandoned(BaseException):
    """A second Ctrl-C (or SIGTERM) while a run waited for its samples in flight: they are left to their worker
    threads, which the process does not wait for (`drp` exits at once with `exit_code`); what finished is kept."""

    def __init__(self, in_flight: int, exit_code: int):
        super().__init__(f"{in_flight} samples in flight abandoned")
        self.exit_code = exit_code


@contextlib.contextmanager
def usage_errors(what: str) -> Iterator[None]:
    """Turn a ValueError or OSError raised inside into a UsageError naming `what` (an option, a file): for
    code that only reads what the user pointed at, where such an error is the user's to fix."""
    try:
        yield
    except ExpectedError:
        raise
    except (ValueError, OSError) as error:
        raise UsageError(f"{what}: {error}") from error
