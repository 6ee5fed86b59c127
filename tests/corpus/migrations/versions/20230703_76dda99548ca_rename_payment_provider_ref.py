"""rename payment.provider_ref to external_id

Revision ID: 76dda99548ca
Revises: e791e45cf693
Create Date: 2023-07-03 10:49:55.203114

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "76dda99548ca"
down_revision = "e791e45cf693"
branch_labels = None
depends_on = None


# predeploy: allow renaming-column -- payments worker deployed with external_id before this ran
def upgrade():
    op.alter_column(
        "payment",
        "provider_ref",
        new_column_name="external_id",
        existing_type=sa.String(length=128),
        existing_nullable=True,
    )


def downgrade():
    op.alter_column(
        "payment",
        "external_id",
        new_column_name="provider_ref",
        existing_type=sa.String(length=128),
        existing_nullable=True,
    )
