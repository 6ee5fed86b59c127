"""The harness's per-revision lines reach the terminal whatever the project's logging says.

A project that adds the harness keeps its own alembic.ini, whose [loggers] know nothing
of `neon_migrate`: its root at WARNING would swallow every "applied ..." line, and a
pyproject-only configuration sets up no logging at all.
"""

from __future__ import annotations

import logging
import sys


def show_progress() -> None:
    logger = logging.getLogger("neon_migrate")
    if logger.level == logging.NOTSET:  # not configured by the project: INFO is progress
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:  # nothing would print it
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
