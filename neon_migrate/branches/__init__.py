"""Neon branches for the pre-deploy check: rehearse pending migrations on a copy.

A Neon branch is an instant copy-on-write copy of a database with its own compute
endpoint. `api.NeonApi` is a small client for the part of Neon's HTTP API the check
needs (endpoints, branches, operations, connection URIs). Its local stand-in, which
serves that same part of the API beside the local twin (real copies of the twin's
database, so the branch code path runs in every test run without a Neon account), is
development-only and lives with the twin: neon_migrate.twin.standin.
"""
