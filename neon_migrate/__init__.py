"""Neon migration harness: shared connection module and safe Alembic migrations."""
