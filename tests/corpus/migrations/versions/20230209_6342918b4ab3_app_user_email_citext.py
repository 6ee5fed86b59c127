"""app_user.email as citext

Log-ins failed for people who typed their address with a capital letter.

Revision ID: 6342918b4ab3
Revises: dd120316d5c6
Create Date: 2023-02-09 11:15:02.007741

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "6342918b4ab3"
down_revision = "dd120316d5c6"
branch_labels = None
depends_on = None


# predeploy: allow changing-column-type -- app_user is a few hundred rows: a rewrite of ms
def upgrade():
    op.alter_column(
        "app_user",
        "email",
        existing_type=sa.String(length=255),
        type_=postgresql.CITEXT(),
        existing_nullable=False,
        postgresql_using="email::citext",
    )


def downgrade():
    op.alter_column(
        "app_user",
        "email",
        existing_type=postgresql.CITEXT(),
        type_=sa.String(length=255),
        existing_nullable=False,
        postgresql_using="email::varchar(255)",
    )
