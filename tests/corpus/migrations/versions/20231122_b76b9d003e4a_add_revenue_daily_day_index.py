"""add revenue_daily day index

Revision ID: b76b9d003e4a
Revises: 69ad8884749c
Create Date: 2023-11-22 11:18:36.024419

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "b76b9d003e4a"
down_revision = "69ad8884749c"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(op.f("ix_revenue_daily_day"), "revenue_daily", ["day"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_revenue_daily_day"), table_name="revenue_daily")
