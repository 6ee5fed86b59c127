"""Migrating many databases: `neon-migrate fleet migrate` and `fleet status`.

The harness does not become a scheduler: a CI matrix, a Kubernetes Indexed Job or a cron
runs the jobs (`--shard I/N` splits the fleet between them). What it adds is that every
database gets `neon-migrate migrate` unchanged, each in its own process with its own
environment (Alembic's `context` is process-wide), a canary first, bounded concurrency,
and one report of which database ended how.

targets.py reads the targets file, neon.py expands its `[neon]` table through Neon's
API, shard.py picks a job's share, revisions.py reads what the scripts aim at, worker.py
is one database's process, runner.py runs them, report.py says what happened.
"""
