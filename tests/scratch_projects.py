"""Existing projects that adopt the harness, written for these tests.

`fastapi_backend`: a FastAPI + SQLModel backend in the `backend/` folder of a git
repository, as many teams lay one out: its Alembic chain under app/alembic/versions (one
revision creates the uuid-ossp extension), a psycopg 3 engine with its defaults, its own
pydantic Settings with POSTGRES_* variables, its own tests (app/tests), a stock Alembic
env.py that takes the URL from those settings, and an alembic.ini without
prepend_sys_path (the package is installed in its own setup).

`flask_app`: the files of a Flask + Flask-SQLAlchemy + Flask-Migrate app that `init` reads
(it imports nothing): an app factory calling Migrate(), db.Model models and Flask-Migrate's
migrations/ folder with its own alembic.ini and env.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

FASTAPI_REVISIONS = ("a1f0c3d2b4e5", "b2e1d4c3a5f6", "c3d2e5f4b6a7", "d4c3f6a5c7b8")
FASTAPI_HEAD = FASTAPI_REVISIONS[-1]

FASTAPI_BACKEND = {
    "pyproject.toml": """\
[project]
name = "scratch-backend"
version = "0.1.0"
requires-python = ">=3.10,<4.0"
dependencies = [
    "fastapi>=0.115",
    "sqlmodel>=0.0.22",
    "alembic>=1.16",
    "psycopg[binary]>=3.2",
    "pydantic-settings>=2.4",
]
""",
    ".env.example": """\
# Copy to .env and fill in.
POSTGRES_SERVER=localhost
POSTGRES_PORT=5432
POSTGRES_USER=postgres
POSTGRES_PASSWORD=changethis
POSTGRES_DB=app
""",
    "alembic.ini": """\
# A generic, single database configuration.

[alembic]
# path to migration scripts
script_location = app/alembic

# template used to generate migration files
# file_template = %%(rev)s_%%(slug)s

# timezone to use when rendering the date
# within the migration file as well as the filename.
# timezone =

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console
qualname =

[logger_sqlalchemy]
level = WARN
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
""",
    "app/__init__.py": "",
    "app/core/__init__.py": "",
    "app/core/config.py": """\
from pydantic import PostgresDsn, computed_field
from pydantic_core import MultiHostUrl
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    PROJECT_NAME: str = "scratch"
    POSTGRES_SERVER: str = "localhost"
    POSTGRES_PORT: int = 5432
    POSTGRES_USER: str = "postgres"
    POSTGRES_PASSWORD: str = ""
    POSTGRES_DB: str = "app"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def SQLALCHEMY_DATABASE_URI(self) -> PostgresDsn:
        return MultiHostUrl.build(
            scheme="postgresql+psycopg",
            username=self.POSTGRES_USER,
            password=self.POSTGRES_PASSWORD,
            host=self.POSTGRES_SERVER,
            port=self.POSTGRES_PORT,
            path=self.POSTGRES_DB,
        )


settings = Settings()
""",
    "app/core/db.py": """\
from sqlmodel import Session, create_engine

from app.core.config import settings

engine = create_engine(str(settings.SQLALCHEMY_DATABASE_URI))


def get_db():
    with Session(engine) as session:
        yield session
""",
    "app/models.py": """\
import uuid

from sqlalchemy import text
from sqlmodel import Field, SQLModel


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=255, unique=True, index=True)
    full_name: str | None = Field(default=None, max_length=255)
    is_active: bool = True
    public_id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        sa_column_kwargs={"server_default": text("uuid_generate_v4()")},
    )


class Item(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=255)
    description: str | None = Field(default=None, max_length=255)
    owner_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
""",
    "app/main.py": """\
from fastapi import Depends, FastAPI
from sqlmodel import Session, select

from app.core.db import get_db
from app.models import Item

app = FastAPI()


@app.get("/items")
def items(session: Session = Depends(get_db)) -> list[Item]:
    return list(session.exec(select(Item)).all())
""",
    "app/tests/__init__.py": "",
    "app/tests/test_items.py": """\
from sqlmodel import Session, select

from app.core.db import engine
from app.models import Item, User


def test_two_connections_take_turns_reading_items():
    # Two requests at once, each query its own transaction: the same statement, 50 times.
    with Session(engine) as setup:
        user = User(email="owner@example.com")
        setup.add(user)
        setup.commit()
        setup.add(Item(title="first", owner_id=user.id))
        setup.commit()
        owner = user.id
    query = select(Item.title).where(Item.owner_id == owner)
    with engine.connect() as one, engine.connect() as two:
        for n in range(50):
            connection = (one, two)[n % 2]
            found = connection.execute(query).scalars().all()
            connection.commit()
            assert found == ["first"]
""",
    "app/alembic/env.py": """\
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

from app.core.config import settings
from app.models import SQLModel

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = SQLModel.metadata


def get_url():
    return str(settings.SQLALCHEMY_DATABASE_URI)


def run_migrations_offline():
    context.configure(
        url=get_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    configuration = config.get_section(config.config_ini_section)
    configuration["sqlalchemy.url"] = get_url()
    connectable = engine_from_config(
        configuration, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
""",
    "app/alembic/script.py.mako": '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""
from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
''',
    "app/alembic/versions/a1f0c3d2b4e5_create_user_and_item.py": '''\
"""create user and item

Revision ID: a1f0c3d2b4e5
Revises:
Create Date: 2024-01-10 10:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = "a1f0c3d2b4e5"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("full_name", sa.String(length=255), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_user_email"), "user", ["email"], unique=True)
    op.create_table(
        "item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():
    op.drop_table("item")
    op.drop_index(op.f("ix_user_email"), table_name="user")
    op.drop_table("user")
''',
    "app/alembic/versions/b2e1d4c3a5f6_item_description.py": '''\
"""item description

Revision ID: b2e1d4c3a5f6
Revises: a1f0c3d2b4e5
Create Date: 2024-02-03 09:30:00

"""
from alembic import op
import sqlalchemy as sa

revision = "b2e1d4c3a5f6"
down_revision = "a1f0c3d2b4e5"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("item", sa.Column("description", sa.String(length=255), nullable=True))


def downgrade():
    op.drop_column("item", "description")
''',
    "app/alembic/versions/c3d2e5f4b6a7_uuid_public_ids.py": '''\
"""uuid public ids

Revision ID: c3d2e5f4b6a7
Revises: b2e1d4c3a5f6
Create Date: 2024-03-15 16:45:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "c3d2e5f4b6a7"
down_revision = "b2e1d4c3a5f6"
branch_labels = None
depends_on = None


def upgrade():
    op.execute('CREATE EXTENSION IF NOT EXISTS "uuid-ossp"')
    op.add_column(
        "user",
        sa.Column(
            "public_id",
            postgresql.UUID(),
            server_default=sa.text("uuid_generate_v4()"),
            nullable=False,
        ),
    )


def downgrade():
    op.drop_column("user", "public_id")
''',
    "app/alembic/versions/d4c3f6a5c7b8_item_owner_cascade.py": '''\
"""item owner: on delete cascade

Revision ID: d4c3f6a5c7b8
Revises: c3d2e5f4b6a7
Create Date: 2024-04-02 11:20:00

"""
from alembic import op

revision = "d4c3f6a5c7b8"
down_revision = "c3d2e5f4b6a7"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_constraint("item_owner_id_fkey", "item", type_="foreignkey")
    op.create_foreign_key(
        "item_owner_id_fkey", "item", "user", ["owner_id"], ["id"], ondelete="CASCADE"
    )


def downgrade():
    op.drop_constraint("item_owner_id_fkey", "item", type_="foreignkey")
    op.create_foreign_key("item_owner_id_fkey", "item", "user", ["owner_id"], ["id"])
''',
}

FLASK_APP = {
    "requirements.txt": """\
Flask==3.1.0
Flask-SQLAlchemy==3.1.1
Flask-Migrate==4.0.7
alembic==1.12.1
psycopg2-binary==2.9.10
""",
    "app/__init__.py": """\
import os

from flask import Flask

from app.extensions import db, migrate


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get("DATABASE_URL", "sqlite:///app.db")
    db.init_app(app)
    migrate.init_app(app, db)
    return app
""",
    "app/extensions.py": """\
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
migrate = Migrate()
""",
    "app/models.py": """\
from app.extensions import db


class Post(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    title = db.Column(db.String(200), nullable=False)
""",
    "migrations/README": "Single-database configuration for Flask.\n",
    "migrations/alembic.ini": """\
# A generic, single database configuration.

[alembic]
# template used to generate migration files
# file_template = %%(rev)s_%%(slug)s

# set to 'true' to run the environment during
# the 'revision' command, regardless of autogenerate
# revision_environment = false


# Logging configuration
[loggers]
keys = root,sqlalchemy,alembic,flask_migrate

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console
qualname =

[logger_sqlalchemy]
level = WARN
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[logger_flask_migrate]
level = INFO
handlers =
qualname = flask_migrate

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
""",
    "migrations/env.py": """\
import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config
fileConfig(config.config_file_name)
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


config.set_main_option("sqlalchemy.url", str(get_engine().url).replace("%", "%%"))
target_db = current_app.extensions["migrate"].db


def run_migrations_online():
    conf_args = current_app.extensions["migrate"].configure_args
    with get_engine().connect() as connection:
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
""",
    "migrations/script.py.mako": '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""
from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
''',
    "migrations/versions/0f1e2d3c4b5a_create_post.py": '''\
"""create post

Revision ID: 0f1e2d3c4b5a
Revises:
Create Date: 2024-05-01 08:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = "0f1e2d3c4b5a"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "post",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():
    op.drop_table("post")
''',
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def fastapi_backend(repository: Path) -> Path:
    """A git repository with the backend in `backend/`; returns the backend's folder."""
    repository.mkdir(parents=True, exist_ok=True)
    write(repository, {".gitignore": "node_modules/\n__pycache__/\n", "README.md": "# scratch\n"})
    backend = write(repository / "backend", FASTAPI_BACKEND)
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    return backend


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (caches aside) and its bytes: what a second init must keep."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.parts and "__pycache__" not in path.parts
    }
