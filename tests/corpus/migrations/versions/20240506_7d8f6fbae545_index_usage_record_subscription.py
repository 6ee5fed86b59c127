"""index usage_record (subscription_id, recorded_at)

Revision ID: 7d8f6fbae545
Revises: 2a37f64dbed9
Create Date: 2024-05-06 09:48:12.906231

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7d8f6fbae545"
down_revision: str | None = "2a37f64dbed9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_usage_record_subscription_id_recorded_at",
            "usage_record",
            ["subscription_id", "recorded_at"],
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_usage_record_subscription_id_recorded_at",
            table_name="usage_record",
            postgresql_concurrently=True,
        )
