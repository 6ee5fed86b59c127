"""add invoice.public_id

Nullable for now: 9805007acda1 backfills it in batches, e8b11e8016b8 makes it NOT NULL.

Revision ID: 88bbbaacbad0
Revises: db4396ddb9b4
Create Date: 2024-01-22 15:47:30.861024

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "88bbbaacbad0"
down_revision: str | None = "db4396ddb9b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("invoice", sa.Column("public_id", postgresql.UUID(), nullable=True))


def downgrade() -> None:
    op.drop_column("invoice", "public_id")
