"""organization name trigram search

The admin search box does ILIKE '%term%' on organization.name; a trigram GIN index
serves that. pg_trgm ships with contrib and is available on Neon.

Revision ID: d5c846888ac0
Revises: 17b848ddedb3
Create Date: 2023-09-12 15:51:03.339207

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "d5c846888ac0"
down_revision = "17b848ddedb3"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_organization_name_trgm "
        "ON organization USING gin (name gin_trgm_ops)"
    )


def downgrade():
    op.execute("DROP INDEX IF EXISTS ix_organization_name_trgm")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
