"""order note

Revision ID: c7e93a15f402
Revises: 8b24e6d0c5a1
Create Date: 2026-12-03 16:45:00

"""

import sqlalchemy as sa
from alembic import op

revision = "c7e93a15f402"
down_revision = "8b24e6d0c5a1"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("purchase_order", sa.Column("note", sa.String(length=500), nullable=True))


def downgrade():
    op.drop_column("purchase_order", "note")
