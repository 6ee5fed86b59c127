"""The example application: a FastAPI + SQLModel service that uses neon_migrate."""
