"""index invoice due_at and (organization_id, status) concurrently

Revision ID: 8245bd004cbf
Revises: e8b11e8016b8
Create Date: 2024-02-19 17:21:55.746290

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "8245bd004cbf"
down_revision: str | None = "e8b11e8016b8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # CREATE INDEX CONCURRENTLY cannot run in a transaction block
    with op.get_context().autocommit_block():
        op.create_index(
            op.f("ix_invoice_due_at"),
            "invoice",
            ["due_at"],
            unique=False,
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            op.f("ix_invoice_organization_id_status"),
            "invoice",
            ["organization_id", "status"],
            unique=False,
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            op.f("ix_invoice_organization_id_status"),
            table_name="invoice",
            postgresql_concurrently=True,
            if_exists=True,
        )
        op.drop_index(
            op.f("ix_invoice_due_at"),
            table_name="invoice",
            postgresql_concurrently=True,
            if_exists=True,
        )
