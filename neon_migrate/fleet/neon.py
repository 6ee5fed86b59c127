"""A `[neon]` table's branches as targets, through Neon's API (neon_migrate.branches.api).

    [neon]
    project_id_env = "NEON_PROJECT_ID"
    api_key_env = "NEON_API_KEY"
    branches = "tenant-*"            # a glob over branch names
    database = "neondb"
    role = "neondb_owner"

Every page of the branch list is read (Neon pages it: `limit`, `cursor`,
`pagination.next`), so a project with more branches than one page holds is covered whole.
Targets are the matching branches in name order (the first is the canary). Only the
shard's own branches get their connection URI fetched (one request each), so N jobs
cost N lists, not N times the fleet. NEON_API_URL points at another API (the twin's
stand-in).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from neon_migrate.errors import ConfigError
from neon_migrate.fleet.targets import NeonSpec, Target


class NeonFleet:
    """The project's matching branches; use as a context manager (it holds a client)."""

    def __init__(self, spec: NeonSpec, environ: Mapping[str, str], api: Any = None) -> None:
        self.spec = spec
        if api is None:
            from neon_migrate.branches.api import NEON_API_URL, NeonApi

            key, project = (
                _variable(environ, spec.api_key_env, "API key"),
                _variable(environ, spec.project_id_env, "project ID"),
            )
            api = NeonApi(environ.get("NEON_API_URL") or NEON_API_URL, key, project)
        self.api = api
        self._ids: dict[str, tuple[str, str | None]] = {}  # name: (branch id, endpoint id)

    def __enter__(self) -> NeonFleet:
        return self

    def __exit__(self, *_: object) -> None:
        self.api.close()

    def targets(self) -> list[Target]:
        """The matching branches, by name; URLs not fetched yet (see with_urls)."""
        writable = {
            e.get("branch_id"): str(e["id"])
            for e in self.api.endpoints()
            if e.get("type") == "read_write" and e.get("id")
        }
        found: dict[str, Target] = {}
        for branch in every_branch(self.api):
            name = str(branch.get("name", ""))
            if not fnmatch.fnmatchcase(name, self.spec.branches):
                continue
            if name in found:
                raise ConfigError(
                    f"the Neon project has two branches named {name!r}",
                    "rename one: targets are named by their branch",
                )
            branch_id = str(branch["id"])
            self._ids[name] = (branch_id, writable.get(branch_id))
            problem = None
            if writable.get(branch_id) is None:
                problem = (
                    f"branch {name} ({branch_id}) has no read-write compute. Fix: add "
                    "one to the branch in the Neon console"
                )
            found[name] = Target(name, self.spec.line, problem=problem)
        return [found[name] for name in sorted(found)]

    def with_urls(self, targets: Iterable[Target]) -> list[Target]:
        """Each target with its branch's direct connection URI (a password inside); a
        branch whose URI Neon refuses fails alone, at its turn."""
        from neon_migrate.branches.api import NeonApiError

        done = []
        for target in targets:
            branch_id, endpoint_id = self._ids[target.name]
            if target.problem or endpoint_id is None:
                done.append(target)
                continue
            try:
                url = self.api.connection_uri(
                    branch_id, endpoint_id, self.spec.database, self.spec.role
                )
            except NeonApiError as err:
                done.append(replace(target, problem=f"branch {target.name}: {err}"))
                continue
            done.append(replace(target, url=url))
        return done


def every_branch(api: Any) -> list[dict[str, Any]]:
    """Every branch of the project, each once: the client reads every page, and a branch
    may show on two pages when the list changes between two requests."""
    unique: dict[str, dict[str, Any]] = {}
    for branch in api.branches():
        if branch.get("id"):
            unique.setdefault(str(branch["id"]), branch)
    return list(unique.values())


def _variable(environ: Mapping[str, str], name: str, what: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(
            f"{name} is not set: the [neon] table names it for Neon's {what}", f"export {name}"
        )
    return value
