"""add plan limits and features

Revision ID: b0880f315b2f
Revises: 918b9a7dd804
Create Date: 2024-11-04 10:50:06.308447

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "b0880f315b2f"
down_revision: str | None = "918b9a7dd804"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("plan", sa.Column("max_seats", sa.Integer(), nullable=True))
    op.add_column(
        "plan",
        sa.Column(
            "features",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    # a space after each JSON colon: '":true' would be read as a :true bind parameter
    op.execute(
        """
        UPDATE plan AS p
        SET max_seats = v.max_seats, features = v.features::jsonb
        FROM (VALUES ('free', 3, '{"sso": false, "audit_log": false}'),
                     ('pro', 50, '{"sso": false, "audit_log": true}'),
                     ('business', NULL, '{"sso": true, "audit_log": true}'))
             AS v (code, max_seats, features)
        WHERE p.code = v.code
        """
    )


def downgrade() -> None:
    op.drop_column("plan", "features")
    op.drop_column("plan", "max_seats")
