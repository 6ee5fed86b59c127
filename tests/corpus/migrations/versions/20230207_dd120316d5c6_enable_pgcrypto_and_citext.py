"""enable pgcrypto and citext

Needed before anything else: citext for case-insensitive e-mail addresses, pgcrypto for
random tokens (gen_random_bytes) and, on older servers, gen_random_uuid().

Revision ID: dd120316d5c6
Revises: b8875579e9e7
Create Date: 2023-02-07 16:02:44.918230

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "dd120316d5c6"
down_revision = "b8875579e9e7"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
    op.execute("CREATE EXTENSION IF NOT EXISTS citext")


def downgrade():
    op.execute("DROP EXTENSION IF EXISTS citext")
    op.execute("DROP EXTENSION IF EXISTS pgcrypto")
