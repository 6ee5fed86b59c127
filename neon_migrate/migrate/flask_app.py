"""env.py inside a Flask app (`flask db upgrade`, `flask db migrate`): what the app says.

Flask-Migrate runs env.py inside the app's context, with `Migrate(app, db, ...)`'s state in
`current_app.extensions["migrate"]`: the Flask-SQLAlchemy `db` whose models autogenerate
compares, and `configure_args` (compare_type, render_as_batch and whatever else was given
to `Migrate(...)`) meant for `context.configure()`. Stock Flask-Migrate's env.py uses
both; the harness's env.py does too, so adopting it changes the safety, not the app's
choices. The database is still the harness's (the direct endpoint): the app's engine is
Neon's pooled one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from neon_migrate.errors import ConfigError

# The environment's own arguments: configure_args that named them would clash with the
# connection (or offline dialect) env.py hands Alembic.
_ENVIRONMENT_KEYS = {"connection", "url", "dialect_name", "dialect_opts", "literal_binds",
                     "as_sql", "output_buffer"}  # fmt: skip


def migrate_state() -> Any | None:
    """Flask-Migrate's state for the running app; None outside a Flask app.

    Flask is never imported here: a process that has not imported it is not inside an app.
    """
    flask = sys.modules.get("flask")
    if flask is None or not flask.has_app_context():
        return None
    return flask.current_app.extensions.get("migrate")


def metadata(state: Any) -> Any:
    """The app's MetaData, as stock Flask-Migrate's env.py finds it (the default bind's)."""
    db = state.db
    metadatas = getattr(db, "metadatas", None)  # Flask-SQLAlchemy 3, several binds
    if metadatas and None in metadatas:
        return metadatas[None]
    return db.metadata


def refuse_another_database(state: Any, endpoints: Any) -> None:
    """`flask db upgrade` must migrate the database the app uses.

    The harness migrates on the direct endpoint from its own settings, never through the
    app's engine; an app whose SQLALCHEMY_DATABASE_URI names another database (a SQLite
    fallback when DATABASE_URL is unset, another variable) would be left unmigrated while
    the command reports success. The app's URL must be the pooled or the direct URL of the
    database the harness targets.
    """
    from sqlalchemy.engine import make_url

    from neon_migrate.connection import urls

    try:
        app_url = state.db.engine.url
    except Exception:  # an extension without a Flask-SQLAlchemy engine: nothing to compare
        return

    def place(url) -> tuple:
        host = "local" if urls.is_local_host(url.host) else (url.host or "").lower()
        return (url.get_backend_name(), host, url.port or 5432, url.database)

    targets = {place(urls.to_sqlalchemy(u)) for u in (endpoints.pooled, endpoints.direct)}
    if place(make_url(app_url)) in targets:
        return
    shown = urls.mask(app_url.render_as_string(hide_password=True))
    raise ConfigError(
        f"the Flask app's database ({shown}, its SQLALCHEMY_DATABASE_URI) is not the one "
        f"migrations run on ({endpoints.direct_variable}: {urls.mask(endpoints.direct)})",
        "give the app the pooled URL of that database (DATABASE_URL), or point "
        f"{endpoints.direct_variable} at the app's database",
    )


def merged(ours: dict[str, Any], theirs: dict[str, Any] | None) -> dict[str, Any]:
    """`context.configure()` options: the app's choices over the harness's defaults, except
    what the harness's safety rests on, which is combined, never replaced.

    - transaction_per_migration stays on (the lock, timeouts and stamp are per revision);
    - on_version_apply: ours (the stamp and its history row) and theirs;
    - process_revision_directives, include_name, render_item: both run, ours first for
      the first two (the harness's table is never dropped, an empty revision is not
      written), theirs first for rendering (their types are theirs to spell).
    """
    theirs = {k: v for k, v in (theirs or {}).items() if k not in _ENVIRONMENT_KEYS}
    options = {**ours, **theirs, "transaction_per_migration": True}
    options["on_version_apply"] = _as_list(ours.get("on_version_apply")) + _as_list(
        theirs.get("on_version_apply")
    )
    for name, combine in (
        ("process_revision_directives", _both),
        ("include_name", _all_include),
        ("render_item", _first_rendering),
    ):
        if theirs.get(name) and ours.get(name):
            options[name] = combine(ours[name], theirs[name])
    return options


def _as_list(hooks: Any) -> list:
    if hooks is None:
        return []
    return list(hooks) if isinstance(hooks, list | tuple) else [hooks]


def _both(first: Callable, second: Callable) -> Callable:
    def process_revision_directives(context, revision, directives) -> None:
        first(context, revision, directives)
        if directives:  # the first may have decided no revision is written
            second(context, revision, directives)

    return process_revision_directives


def _all_include(first: Callable, second: Callable) -> Callable:
    def include_name(name, type_, parent_names) -> bool:
        return first(name, type_, parent_names) and second(name, type_, parent_names)

    return include_name


def _first_rendering(ours: Callable, theirs: Callable) -> Callable:
    def render_item(type_, obj, autogen_context):
        rendered = theirs(type_, obj, autogen_context)
        return ours(type_, obj, autogen_context) if rendered is False else rendered

    return render_item
