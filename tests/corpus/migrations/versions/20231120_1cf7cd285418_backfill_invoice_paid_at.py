"""backfill invoice.paid_at and revenue_daily

paid_at is the time of the last payment of a paid invoice. revenue_daily (reporting
branch) is filled from it in the same pass, hence depends_on.

Revision ID: 1cf7cd285418
Revises: f03c6948f054
Create Date: 2023-11-20 14:02:57.660841

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "1cf7cd285418"
down_revision: str | None = "f03c6948f054"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "69ad8884749c"


def upgrade() -> None:
    op.execute(
        """
        UPDATE invoice AS i
        SET paid_at = p.last_received_at
        FROM (SELECT invoice_id, max(received_at) AS last_received_at
              FROM payment GROUP BY invoice_id) AS p
        WHERE p.invoice_id = i.id AND i.status = 'paid' AND i.paid_at IS NULL
        """
    )
    op.execute(
        """
        INSERT INTO revenue_daily (organization_id, day, currency, amount, invoice_count)
        SELECT organization_id, paid_at::date, currency, sum(total), count(*)
        FROM invoice
        WHERE paid_at IS NOT NULL
        GROUP BY organization_id, paid_at::date, currency
        ON CONFLICT (organization_id, day, currency) DO NOTHING
        """
    )


def downgrade() -> None:
    op.execute("DELETE FROM revenue_daily")
    op.execute("UPDATE invoice SET paid_at = NULL WHERE paid_at IS NOT NULL")
