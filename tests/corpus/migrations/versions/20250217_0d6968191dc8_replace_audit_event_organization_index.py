"""replace audit_event organization index with (organization_id, created_at)

The activity feed filters by organization and sorts by time; the new index serves both
and makes the single-column one redundant.

Revision ID: 0d6968191dc8
Revises: 6d2e748e9c6b
Create Date: 2025-02-17 14:06:52.901362

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0d6968191dc8"
down_revision: str | None = "6d2e748e9c6b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            op.f("ix_audit_event_organization_id_created_at"),
            "audit_event",
            ["organization_id", "created_at"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index(
            op.f("ix_audit_event_organization_id"),
            table_name="audit_event",
            postgresql_concurrently=True,
            if_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            op.f("ix_audit_event_organization_id"),
            "audit_event",
            ["organization_id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index(
            op.f("ix_audit_event_organization_id_created_at"),
            table_name="audit_event",
            postgresql_concurrently=True,
            if_exists=True,
        )
