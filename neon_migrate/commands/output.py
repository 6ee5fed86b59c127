"""Where a command's words go: results on stdout, progress on stderr.

A script can read stdout (a table, JSON, SQL) while a person watches stderr; `-v` adds
detail (the pools a run used) to stderr, and NO_COLOR (no-color.org) or `--no-color`
turns colour off wherever a terminal would get it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

_options = {"verbose": False, "colour": True}


def configure(verbose: bool, colour: bool) -> None:
    _options.update(verbose=verbose, colour=colour and not os.environ.get("NO_COLOR"))


def verbose() -> bool:
    return _options["verbose"]


def colour(stream: TextIO = sys.stdout) -> bool:
    return _options["colour"] and not os.environ.get("NO_COLOR") and stream.isatty()


def out(line: str) -> None:
    """A result: what the command answers."""
    print(line, flush=True)


def note(line: str) -> None:
    """Progress: what the command is doing, for the person watching."""
    print(line, file=sys.stderr, flush=True)


def detail(line: str) -> None:
    """Progress worth showing only with -v."""
    if _options["verbose"]:
        note(line)


def out_json(document: dict[str, Any]) -> None:
    print(json.dumps({"version": 1, **document}, indent=2, default=str), flush=True)
