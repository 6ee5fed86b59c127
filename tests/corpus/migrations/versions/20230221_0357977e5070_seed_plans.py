"""seed plans

The three plans sales launched with. Prices are in USD per month.

Revision ID: 0357977e5070
Revises: b3d5b7b3ae8c
Create Date: 2023-02-21 08:55:10.331902

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0357977e5070"
down_revision = "b3d5b7b3ae8c"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "INSERT INTO plan (code, name, description, price_monthly) VALUES "
        "('free', 'Free', 'Up to 3 seats, community support', 0), "
        "('pro', 'Pro', 'Save 100% on setup: first month free', 49.00), "
        "('business', 'Business', 'SSO, audit log, 99.9% uptime SLA', 199.00)"
    )


def downgrade():
    op.execute("DELETE FROM plan WHERE code IN ('free', 'pro', 'business')")
