"""subscription status check

Safe now that 2c49ab5e02ae rewrote the old 'trialling' rows.

Revision ID: fd28723f3e31
Revises: 0d6968191dc8
Create Date: 2025-03-10 10:17:25.534082

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "fd28723f3e31"
down_revision: str | None = "0d6968191dc8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_check_constraint(
        "status_valid",
        "subscription",
        "status IN ('trial', 'active', 'past_due', 'cancelled')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_subscription_status_valid"), "subscription", type_="check")
