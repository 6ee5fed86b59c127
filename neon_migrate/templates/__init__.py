"""Files `neon-migrate init` writes into a project; this repository uses the same ones
(migrations/env.py and .env.example are links here, the Makefile includes neon-migrate.mk)."""
