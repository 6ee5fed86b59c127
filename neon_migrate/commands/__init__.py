"""The commands of `neon-migrate`, one module each.

Each module defines `COMMAND`: its name, its help, its own arguments and the function that
runs it. cli.py builds the parser from them, in the order of MODULES (the order `--help`
lists them), dispatches, and turns errors into one line and an exit code. A module imports
only light things at its top: the parser is built from all of them on every run.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass

MODULES = ("migrate", "status", "history", "check", "sql", "verify", "revision", "downgrade",
           "db_up", "db_down", "serve", "pool_size", "fleet", "scaffold")  # fmt: skip


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command that takes no arguments of its own."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str  # the line `neon-migrate --help` shows
    description: str  # what `neon-migrate <name> --help` says first
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    # Its promises live in env.py: it stops when the project's env.py is not the harness's.
    through_env_py: bool = False
    # Every network wait bounded, and the local twin may start (all but `init`).
    connects: bool = True
    # Said besides stderr's `error:` line when it fails (the check, on GitHub Actions).
    on_failure: Callable[[str, int], None] | None = None


def json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON on stdout, for machines")


def registry() -> dict[str, Command]:
    """Every command by name, in MODULES' order."""
    commands = [importlib.import_module(f"{__name__}.{name}").COMMAND for name in MODULES]
    return {command.name: command for command in commands}
