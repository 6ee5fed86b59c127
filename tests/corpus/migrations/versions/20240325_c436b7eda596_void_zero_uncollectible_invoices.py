"""void zero-amount uncollectible invoices

Revision ID: c436b7eda596
Revises: 8048aa8fb792
Create Date: 2024-03-25 10:04:31.590442

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c436b7eda596"
down_revision: str | None = "8048aa8fb792"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE invoice SET status = 'void'::invoice_status "
        "WHERE status = 'uncollectible'::invoice_status AND total = 0"
    )


def downgrade() -> None:
    # only this revision ever wrote 'void'
    op.execute(
        "UPDATE invoice SET status = 'uncollectible'::invoice_status "
        "WHERE status = 'void'::invoice_status"
    )
