"""Offline SQL for chains that hold revisions which only make sense online.

A revision that reads rows through `op.get_bind()` and branches on them, or commits its
own transaction, cannot be written out as SQL: offline there is no result to read and no
connection to commit. Such a revision is rendered as a statement that stops psql where
it stands (with `-v ON_ERROR_STOP=1`, as the README says to apply the SQL), the rest of
the chain is rendered, and the run ends by naming every such revision with its reason.
What a revision wrote before it failed offline is dropped, never half-printed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from alembic.script import Script

from neon_migrate import compat
from neon_migrate.errors import MigrationError

ONLINE_ONLY = "online_only_revisions"  # config.attributes key: [(revision, why), ...]

# What code does with a result: offline, op.get_bind().execute() returns None.
_RESULT_USE = re.compile(
    r"'NoneType' object (?:is not iterable|has no attribute '(?:fetch\w*|scalars?|scalar_one\w*"
    r"|first|one|one_or_none|all|mappings|rowcount|keys|partitions|tuples)')"
)


class OnlineOnlyRevisions(MigrationError):
    """Some revisions could not be rendered as SQL; the rest were."""

    def __init__(self, revisions: list[tuple[str, str]]) -> None:
        self.revisions = revisions
        named = "; ".join(f"{rev} ({why})" for rev, why in revisions)
        first = revisions[0][0]
        super().__init__(
            f"{len(revisions)} revision(s) cannot be rendered as SQL, only run online: {named}. "
            "Each is marked in the SQL by a statement that stops psql there",
            f"apply the SQL with psql -v ON_ERROR_STOP=1, then run `make migrate` from there; "
            f"or render only what follows a revision with `alembic upgrade {first}:head --sql`",
        )


def online_only_reason(exc: BaseException) -> str | None:
    """Why a revision cannot be rendered offline, if that is why it failed; None for any
    other error, which would fail online too and is reported as the bug it is."""
    text = str(exc)
    if isinstance(exc, AttributeError) and compat.MOCK_CONNECTION_ENDS_TRANSACTION.search(text):
        return "it commits its own transaction (op.get_bind().commit())"
    if isinstance(exc, (AttributeError, TypeError)) and _RESULT_USE.search(text):
        return "it reads rows through op.get_bind(), which only exist online"
    return None


def stop_statement(script: Script, why: str) -> str:
    message = (
        f"neon-migrate: revision {script.revision} cannot run from offline SQL; "
        "apply it online with make migrate"
    )
    return (
        f"-- revision {script.revision} ({' '.join((script.doc or '').split())}) "
        f"is not rendered: {why}.\n"
        f"DO $$ BEGIN RAISE EXCEPTION '{message}'; END $$;"
    )


def render(impl, attributes: dict, script: Script, fn: Callable[[], None]) -> None:
    """Run a revision's function offline; if it cannot render, mark it and carry on."""
    buffer = io.StringIO()
    try:
        with compat.output_to(impl, buffer):
            fn()
    except Exception as exc:
        why = online_only_reason(exc)
        if why is None:
            raise  # a bug in the revision, online as much as offline
        impl.static_output(stop_statement(script, why))
        attributes.setdefault(ONLINE_ONLY, []).append((script.revision, why))
        return
    impl.output_buffer.write(buffer.getvalue())
    impl.output_buffer.flush()


def raise_if_any(attributes: dict) -> None:
    """After the whole render: the run fails, naming the revisions left to run online."""
    revisions = attributes.get(ONLINE_ONLY)
    if revisions:
        raise OnlineOnlyRevisions(revisions)
