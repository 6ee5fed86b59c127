"""The app's one door to the database: the shared connection module's engine and session.

Routes import `SessionDep` from here, not from neon_migrate, so the app has a single
place that says which engine it uses (the pooled one, built once per process) and how a
request's transaction ends (committed before the response is sent). Change it here, and
every route follows.
"""

from neon_migrate.connection.engines import get_app_engine
from neon_migrate.web.session import SessionDep

__all__ = ["SessionDep", "get_app_engine"]
