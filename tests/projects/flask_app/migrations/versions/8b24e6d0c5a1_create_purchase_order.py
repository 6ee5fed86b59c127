"""create purchase_order

Revision ID: 8b24e6d0c5a1
Revises: 3f1a9c2b7d10
Create Date: 2026-12-02 09:30:00

"""

import sqlalchemy as sa
from alembic import op

revision = "8b24e6d0c5a1"
down_revision = "3f1a9c2b7d10"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "purchase_order",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_order")),
    )
    op.create_index(
        op.f("ix_purchase_order_customer_id"), "purchase_order", ["customer_id"], unique=False
    )


def downgrade():
    op.drop_index(op.f("ix_purchase_order_customer_id"), table_name="purchase_order")
    op.drop_table("purchase_order")
