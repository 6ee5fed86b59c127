"""index audit_event actor and payload invoice_id

The invoice page lists the audit trail of one invoice: (payload ->> 'invoice_id').

Revision ID: 4ffc8201854b
Revises: 897a9a1657ee
Create Date: 2024-08-26 16:19:05.774420

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "4ffc8201854b"
down_revision: str | None = "897a9a1657ee"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            op.f("ix_audit_event_actor_user_id"),
            "audit_event",
            ["actor_user_id"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_audit_event_payload_invoice_id",
            "audit_event",
            [sa.text("(payload ->> 'invoice_id')")],
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_audit_event_payload_invoice_id",
            table_name="audit_event",
            postgresql_concurrently=True,
        )
        op.drop_index(
            op.f("ix_audit_event_actor_user_id"),
            table_name="audit_event",
            postgresql_concurrently=True,
        )
