"""add membership.invited_by_user_id

membership is read on every request: fail fast instead of queueing the whole app behind
an ACCESS EXCLUSIVE lock request that waits for a long report.
"""

import sqlalchemy as sa
from alembic import op

revision = "6d2e748e9c6b"
down_revision = "037381795e99"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("SET lock_timeout = '2s'")
    op.add_column("membership", sa.Column("invited_by_user_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_membership_invited_by_user_id_app_user"),
        "membership",
        "app_user",
        ["invited_by_user_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade():
    op.execute("SET lock_timeout = '2s'")
    op.drop_constraint(
        op.f("fk_membership_invited_by_user_id_app_user"), "membership", type_="foreignkey"
    )
    op.drop_column("membership", "invited_by_user_id")
