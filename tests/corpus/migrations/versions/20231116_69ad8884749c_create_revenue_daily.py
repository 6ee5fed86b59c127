"""create revenue_daily (reporting)

First revision of the reporting branch, started by the data team next to the main line
(alembic revision --head 96b32cdb40d9 --branch-label reporting --splice).

Revision ID: 69ad8884749c
Revises: 96b32cdb40d9
Create Date: 2023-11-16 16:40:05.377519

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "69ad8884749c"
down_revision = "96b32cdb40d9"
branch_labels = ("reporting",)
depends_on = None


def upgrade():
    op.create_table(
        "revenue_daily",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), server_default="0", nullable=False),
        sa.Column("invoice_count", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_revenue_daily_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revenue_daily")),
        sa.UniqueConstraint(
            "organization_id",
            "day",
            "currency",
            name=op.f("uq_revenue_daily_organization_id_day_currency"),
        ),
    )


def downgrade():
    op.drop_table("revenue_daily")
