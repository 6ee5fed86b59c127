"""Neon migration harness: shared connection module and safe Alembic migrations.

Two halves, and imports run one way:

- What a deployed app imports: `settings`, `connection` (URLs, endpoints, engines,
  connect with retries), `observe` (pool statistics, sizing) and `web` (health routes,
  metrics, the request session). They import each other, `errors` and `project`, and
  nothing of the tooling, not even lazily inside a function.
- The tooling, run by developers and CI: `migrate` (what env.py calls), `check` (the
  pre-deploy check), `branches` (Neon's API client), `twin` (the local PostgreSQL,
  PgBouncer and Neon API stand-in), `fleet`, `commands` and `cli`. It imports the app's
  half freely.

The app's half needs the twin in one place: with no URL configured, in local
development, `connection.endpoints` asks the local provider the tooling registered
(`set_local_provider`); the command line and the alembic command register the twin.
tests/test_seam.py fails when an import runs against this direction.
"""
