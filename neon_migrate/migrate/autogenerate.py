"""Autogenerate hooks: what `alembic revision --autogenerate` writes and what it compares.

SQLModel gives a `str` field with no `sa_type` its own column type, AutoString (and a
`datetime` field UTCDateTime). Alembic renders a type from outside SQLAlchemy by its module
path, `sqlmodel.sql.sqltypes.AutoString(length=12)`, and imports nothing for it: the
revision then fails inside `upgrade()` with `name 'sqlmodel' is not defined`. Both are
TypeDecorators over a plain SQLAlchemy type, which is all the database ever sees, so we
render that type instead (`sa.String(length=12)`): revision files need only
`import sqlalchemy as sa`, and `alembic check` compares them equal to the models.

The harness's own history table lives in the same schema but in no model: autogenerate
would write a revision dropping it, and the drift check would report it. It is left out.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.types import TypeDecorator

from neon_migrate.migrate.history import HISTORY_TABLE


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic's `include_name` hook: every reflected name except the harness's table."""
    return not (type_ == "table" and name == HISTORY_TABLE)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Alembic's `render_item` hook: SQLModel's column types as the SQLAlchemy type under
    them; False lets Alembic render everything else its own way."""
    if type_ != "type" or not isinstance(obj, TypeDecorator):
        return False
    if not type(obj).__module__.startswith("sqlmodel."):
        return False
    underlying = obj.impl_instance
    if not type(underlying).__module__.startswith("sqlalchemy.sql."):
        return False  # not a generic SQLAlchemy type: Alembic's own rendering says what it is
    prefix = autogen_context.opts.get("sqlalchemy_module_prefix") or ""
    return f"{prefix}{underlying!r}"  # as Alembic renders a generic type: sa.String(length=12)


def autogenerate_options() -> dict[str, Any]:
    """The hooks for `context.configure()` and for a MigrationContext that compares."""
    return {"include_name": include_name, "render_item": render_item}
