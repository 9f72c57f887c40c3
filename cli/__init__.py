"""`drp`, the command line: every command a thin layer over the subsystems below it."""

from .commands import main

__all__ = ["main"]
