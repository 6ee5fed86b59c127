"""normalise 'trialling' subscriptions to 'trial'

The billing worker wrote 'trialling' until release 2.14; everything else says 'trial'.
Only touch the table when such rows exist, so a quiet database gets no UPDATE at all.

Revision ID: 2c49ab5e02ae
Revises: d5c846888ac0
Create Date: 2023-10-02 11:06:47.785220

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "2c49ab5e02ae"
down_revision = "d5c846888ac0"
branch_labels = None
depends_on = None


def upgrade():
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id FROM subscription WHERE status = 'trialling' ORDER BY id")
    ).fetchall()
    if not rows:
        return
    bind.execute(
        sa.text("UPDATE subscription SET status = 'trial' WHERE id = ANY(:ids)"),
        {"ids": [row.id for row in rows]},
    )


def downgrade():
    # irreversible: which rows said 'trialling' is not recorded anywhere
    pass
