"""What a fleet run aims at, read once from the scripts: the wanted revision, every
revision the scripts have, and (for `--to`, status and --dry-run) how far a database is
from it. Targets only read their database's revision; this side does the graph work.
"""

from __future__ import annotations

from functools import cached_property

from neon_migrate import project
from neon_migrate.errors import ConfigError, MigrationError


class Scripts:
    def __init__(self) -> None:
        from neon_migrate.commands.migrate import graph

        self.known, self.heads = graph()  # the files `alembic` reads, as `migrate` does
        if not self.heads:
            raise MigrationError(
                "the scripts have no revisions",
                'write the first with `neon-migrate revision -m "..."`',
            )

    def wanted(self, to: str | None) -> tuple[tuple[str, ...], frozenset[str] | None]:
        """(the revisions a run ends at, those a database may be upgraded from); the
        latter is None for head: every revision the scripts have."""
        if to is None or to in ("head", "heads"):
            if len(self.heads) > 1:
                raise MigrationError(
                    f"the scripts have {len(self.heads)} heads ({', '.join(self.heads)})",
                    "merge them with `alembic merge heads -m merge`, or name one with --to",
                )
            return self.heads, None
        from alembic.util import CommandError

        try:
            found = self.script.get_revision(to)
        except CommandError as exc:
            raise ConfigError(
                f"--to {to}: {exc}", "name one `neon-migrate history` lists"
            ) from None
        if found is None:
            raise ConfigError(
                f"--to {to}: no such revision", "name one `neon-migrate history` lists"
            )
        return (found.revision,), self.ancestors((found.revision,))

    @cached_property
    def script(self):
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(project.alembic_config())

    def ancestors(self, revisions: tuple[str, ...]) -> frozenset[str]:
        """The revisions and every one below them."""
        if not revisions:
            return frozenset()
        return frozenset(s.revision for s in self.script.iterate_revisions(revisions, "base"))

    def pending(self, current: tuple[str, ...], wanted: tuple[str, ...]) -> list[str]:
        """What upgrading `current` to `wanted` applies, oldest first."""
        done = self.ancestors(current)
        order = reversed(list(self.script.iterate_revisions(wanted, "base")))
        return [s.revision for s in order if s.revision not in done]
