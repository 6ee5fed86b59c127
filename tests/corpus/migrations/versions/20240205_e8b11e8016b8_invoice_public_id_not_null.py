"""invoice.public_id not null, unique, defaulted

Revision ID: e8b11e8016b8
Revises: 9805007acda1
Create Date: 2024-02-05 11:40:48.019576

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "e8b11e8016b8"
down_revision: str | None = "9805007acda1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# predeploy: allow adding-not-nullable-field -- backfilled by 9805007acda1 in the previous deploy
def upgrade() -> None:
    op.alter_column(
        "invoice",
        "public_id",
        existing_type=postgresql.UUID(),
        nullable=False,
        server_default=sa.text("gen_random_uuid()"),
    )
    op.create_unique_constraint(None, "invoice", ["public_id"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_invoice_public_id"), "invoice", type_="unique")
    op.alter_column(
        "invoice",
        "public_id",
        existing_type=postgresql.UUID(),
        nullable=True,
        server_default=None,
    )
