"""`--shard I/N` and the canary: which targets this job runs, and which go first.

A target's shard is a stable hash of its name, not its position: adding or removing a
target (a new tenant, a branch created between two jobs' reads of Neon's branch list)
moves no other target to another shard, so N jobs started at once, each reading the
fleet itself, still split it with no overlap and no gap. The canary (the first K
targets in file order) always belongs to shard 1: the other shards wait for nothing,
and a CI matrix orders the canary by running shard 1 as a job the others need.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from neon_migrate.fleet.targets import Target


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` with 1 <= I <= N; an argparse type (a bad value is a usage error, exit 2)."""
    import argparse

    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not found or not 1 <= int(found[1]) <= int(found[2]) <= 100_000:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not I/N with 1 <= I <= N (e.g. 1/4; an Indexed Job passes "
            "$((JOB_COMPLETION_INDEX + 1))/N)"
        )
    return int(found[1]), int(found[2])


def shard_of(name: str, count: int) -> int:
    """1..count, the same on every machine and Python version."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def select(
    targets: Sequence[Target], shard: tuple[int, int], canary: int
) -> tuple[list[Target], list[Target]]:
    """(canary, the rest) of this shard, in file order."""
    index, count = shard
    first = list(targets[:canary]) if index == 1 else []
    rest = [t for t in targets[canary:] if shard_of(t.name, count) == index]
    return first, rest
