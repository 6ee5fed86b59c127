"""add invoice_line.sku

Lines written before the catalogue existed get a LEGACY-<id> sku.

Revision ID: c35ea8c78fd8
Revises: 0917d475648e
Create Date: 2024-06-17 10:22:48.730155

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c35ea8c78fd8"
down_revision: str | None = "0917d475648e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("invoice_line", sa.Column("sku", sa.String(length=64), nullable=True))
    op.execute("UPDATE invoice_line SET sku = 'LEGACY-' || id::text WHERE sku IS NULL")


def downgrade() -> None:
    op.drop_column("invoice_line", "sku")
