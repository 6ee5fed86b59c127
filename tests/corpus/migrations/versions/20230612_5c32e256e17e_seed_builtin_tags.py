"""seed built-in tags

Built-in tags belong to no organization and their names start with a colon, which
user tags cannot. The colon is escaped (\\:) because op.execute() runs the string as
sqlalchemy.text(), where ':overdue' would be a bind parameter.

Revision ID: 5c32e256e17e
Revises: 31cac216838b
Create Date: 2023-06-12 09:12:45.662081

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "5c32e256e17e"
down_revision = "31cac216838b"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "INSERT INTO tag (organization_id, name) VALUES "
        "(NULL, '\\:overdue'), (NULL, '\\:disputed'), (NULL, '\\:write-off')"
    )


def downgrade():
    op.execute("DELETE FROM tag WHERE organization_id IS NULL AND name LIKE '\\:%'")
