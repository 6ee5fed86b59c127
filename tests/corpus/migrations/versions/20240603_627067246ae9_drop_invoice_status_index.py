"""drop invoice status index

ix_invoice_organization_id_status (8245bd004cbf) serves every query that used it, and a
four-value column makes a poor index on its own.

Revision ID: 627067246ae9
Revises: 9ef6afe37512
Create Date: 2024-06-03 11:02:37.449102

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "627067246ae9"
down_revision: str | None = "9ef6afe37512"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(op.f("ix_invoice_status"), table_name="invoice", postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            op.f("ix_invoice_status"),
            "invoice",
            ["status"],
            unique=False,
            postgresql_concurrently=True,
        )
