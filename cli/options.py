"""Command-line options derived from the settings dataclasses (`DRPConfig`, `ProgramSettings`, `LMSpec`): a
field with a `help` in its metadata is an option, named after it, typed and defaulted by it."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, fields
from collections.abc import Collection
from typing import Any, Literal, get_args, get_origin, get_type_hints


def _default(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


def option_fields(cls: type) -> list[Field]:
    """The fields of `cls` that are options: those with a help text that no method sets on its own."""
    return [f for f in fields(cls) if "help" in f.metadata and not f.metadata.get("method_only")]


def add_options(parser: argparse.ArgumentParser, cls: type, profiled: Collection[str] = (),
                **choices: list[str]) -> None:
    """One option per field of `option_fields(cls)`: a bool that defaults on becomes `--no-NAME`, one that
    defaults off `--NAME`; a Literal gives the choices (or `choices[NAME]`). A field in `profiled` defaults to
    None, the profile's value (`--profile`), a bool then being `--NAME` / `--no-NAME`."""
    hints = get_type_hints(cls)
    for f in option_fields(cls):
        flag, kind, default, text = "--" + f.name.replace("_", "-"), hints[f.name], _default(f), f.metadata["help"]
        shown = f"{text} (default {default})"
        if f.name in profiled:
            default, text = None, f"{text} (default: --profile's)"
            shown = text
        if kind is bool:
            if f.name in profiled:
                parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
            elif default:
                parser.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false", help=text)
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", help=text)
        elif get_origin(kind) is Literal or f.name in choices:
            options = choices.get(f.name) or list(get_args(kind))
            parser.add_argument(flag, dest=f.name, choices=options, default=default, help=shown)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=default, help=shown)


def values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The option values of `cls`'s fields, to build it with."""
    return {f.name: getattr(args, f.name) for f in option_fields(cls)}
