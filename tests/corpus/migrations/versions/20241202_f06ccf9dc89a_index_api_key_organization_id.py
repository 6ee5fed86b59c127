"""index api_key.organization_id

Revision ID: f06ccf9dc89a
Revises: 9afa058c6021
Create Date: 2024-12-02 08:59:44.820713

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "f06ccf9dc89a"
down_revision: str | None = "9afa058c6021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            op.f("ix_api_key_organization_id"),
            "api_key",
            ["organization_id"],
            unique=False,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            op.f("ix_api_key_organization_id"),
            table_name="api_key",
            postgresql_concurrently=True,
        )
