"""index payment.received_at

Revision ID: 68ac0b3f28e4
Revises: 8245bd004cbf
Create Date: 2024-03-04 08:50:19.402637

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "68ac0b3f28e4"
down_revision: str | None = "8245bd004cbf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    # End the migration transaction first: CONCURRENTLY refuses to run inside one.
    bind.commit()
    # Without autocommit the driver would open a new transaction at the next statement.
    bind.execution_options(isolation_level="AUTOCOMMIT")
    op.execute(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_payment_received_at ON payment (received_at)"
    )
    bind.commit()
    bind.execution_options(isolation_level=bind.default_isolation_level)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_payment_received_at")
