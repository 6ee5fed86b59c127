"""A small shop as Flask apps are usually built: an app factory, Flask-SQLAlchemy models,
Flask-Migrate's `flask db` commands, the database URL read from DATABASE_URL with a
SQLite fallback for a first run. The tests add the harness to it as a user would."""

from __future__ import annotations

import os

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints: what `op.create_foreign_key(None, ...)` creates gets the same name
# online, offline and in a rehearsal.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


def database_uri() -> str:
    """DATABASE_URL (on Neon the pooled string) with the psycopg2 driver named:
    SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql:// URL."""
    url = os.environ.get("DATABASE_URL") or "sqlite:///shop.db"
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_uri()
    db.init_app(app)
    # Flask-Migrate's own defaults would be compare_type=True, render_as_batch=True (for
    # SQLite); this app says what it wants, and the harness's env.py honours it.
    migrate.init_app(app, db, compare_type=True, render_as_batch=False)
    from shop import models  # noqa: F401  (the models register on db.metadata)

    return app
