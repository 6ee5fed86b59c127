"""Request-scoped sessions on the app engine: commit on success, roll back on error.

`get_session` is a generator so FastAPI can use it as a dependency
(`Depends(get_session)`); `session_scope` is the same thing as a `with` block for
scripts and workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlmodel import Session

from app.db.engines import get_app_engine


def get_session() -> Iterator[Session]:
    with Session(get_app_engine()) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


session_scope = contextmanager(get_session)
