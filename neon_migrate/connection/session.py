"""Request-scoped sessions on the app engine: commit on success, roll back on error.

`get_session` is a generator so FastAPI can use it as a dependency: through
`neon_migrate.web.session.SessionDep`, which commits before the response is sent (see
`get_session`). `session_scope` is the same thing as a `with` block for scripts and
workers. A transaction costs a BEGIN and a COMMIT, each a round trip to Neon;
`autocommit_connection` is for work that is one statement anyway: one round trip each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection
from sqlmodel import Session

from neon_migrate.connection.engines import get_app_engine


def get_session() -> Iterator[Session]:
    """A session on the app engine, committed when the caller is done, rolled back if it
    raised.

    In FastAPI use `neon_migrate.web.session.SessionDep`, which is
    `Annotated[Session, Depends(get_session, scope="function")]`. Not a plain
    `Depends(get_session)`: since FastAPI 0.118 the code after `yield` (here, the COMMIT)
    then runs after the response has been sent, so a COMMIT that fails (a deferred
    constraint, a serialization failure, a dropped connection) still answers 200 and the
    write is lost. `neon_migrate.web.session.warn_unscoped_sessions(app)` names such routes.
    """
    with Session(get_app_engine()) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


session_scope = contextmanager(get_session)


@contextmanager
def autocommit_connection() -> Iterator[Connection]:
    """A pooled connection where each statement commits on its own: no BEGIN, no COMMIT,
    one round trip per statement. For single-statement reads and writes; a unit of work
    that needs several statements to succeed together belongs in `session_scope`."""
    with get_app_engine().connect() as conn:
        # The driver's own flag, set and cleared on the client: SQLAlchemy's
        # isolation_level="AUTOCOMMIT" would send `SET default_transaction_isolation` when
        # the connection goes back to the pool, session state that PgBouncer would leak.
        driver = conn.connection.dbapi_connection
        driver.autocommit = True
        try:
            yield conn
        finally:
            if not driver.closed:  # a dead connection keeps its own error, not this one
                driver.autocommit = False
