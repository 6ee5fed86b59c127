"""add grandfathered starter plan, hidden

Customers still on the 2019 price list get a real plan row so their subscriptions can
point at it. It never shows on the pricing page.

Revision ID: 9afa058c6021
Revises: b0880f315b2f
Create Date: 2024-11-18 17:26:39.112574

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9afa058c6021"
down_revision: str | None = "b0880f315b2f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "INSERT INTO plan (code, name, description, price_monthly, is_public, max_seats) "
        "VALUES ('starter-2019', 'Starter (2019)', "
        "'Legacy price list: 20% off list price, seats ratio:10 per admin', 19.00, false, 10) "
        "ON CONFLICT (code) DO NOTHING"
    )
    op.execute("UPDATE plan SET is_public = false WHERE description ILIKE '%legacy%'")


def downgrade() -> None:
    op.execute("DELETE FROM plan WHERE code = 'starter-2019'")
