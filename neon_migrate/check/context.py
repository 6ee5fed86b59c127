"""What the pre-deploy check's checks share: the run's context, a check's result, and how a
check ends other than passing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from neon_migrate import project
from neon_migrate.check import lint as linting
from neon_migrate.check.plan import PlannedRevision
from neon_migrate.connection.connect import connect
from neon_migrate.connection.endpoints import get_endpoints
from neon_migrate.connection.engines import get_migration_engine
from neon_migrate.settings import get_settings


@dataclass
class Result:
    id: str
    status: str  # pass | warn | fail | skip
    message: str
    duration_ms: float = 0.0
    exit_code: int = 0  # set on fail: 1, 2 or 3
    details: dict = field(default_factory=dict)


@dataclass
class Context:
    config_file: str
    root: Path
    results: dict[str, Result] = field(default_factory=dict)
    health: dict = field(default_factory=dict)
    script: ScriptDirectory | None = None
    current: tuple[str, ...] = ()
    pending: list[PlannedRevision] = field(default_factory=list)
    findings: list[linting.Finding] = field(default_factory=list)
    details: dict[str, dict] = field(default_factory=dict)  # a passing check's details
    pools: list = field(default_factory=list)  # PoolSnapshot of each engine the run used
    rehearsal_mode: str | None = None  # "branch" when a branch was made for it
    rehearsed_on_branch: bool = False  # the drift after the pending revisions was compared
    _direct: Connection | None = None

    def direct(self) -> Connection:
        """The one connection to the direct endpoint that lint, rehearsal and drift share:
        on Neon every connect is a TLS handshake, and a compute may be waking up."""
        if self._direct is None:
            self._direct = connect(
                get_migration_engine(),
                retry_seconds=get_settings().db_connect_retry_seconds,
                variable=get_endpoints().direct_variable,
                migrations=True,
            )
        return self._direct

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None

    def version_table(self) -> project.VersionTable:
        return project.version_table(project.alembic_config(self.config_file or None))

    def passed(self, check_id: str) -> bool:
        result = self.results.get(check_id)
        return result is not None and result.status in ("pass", "warn")


class Outcome(Exception):
    """How a check ends other than passing: `raise Outcome("warn", "...")`."""

    def __init__(self, status: str, message: str, exit_code: int = 1, **details) -> None:
        super().__init__(message)
        self.status, self.message, self.exit_code, self.details = (
            status,
            message,
            exit_code,
            details,
        )
