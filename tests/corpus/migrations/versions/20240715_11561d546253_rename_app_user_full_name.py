"""rename app_user.full_name to display_name

Revision ID: 11561d546253
Revises: 36fc97eba201
Create Date: 2024-07-15 09:30:59.881423

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "11561d546253"
down_revision: str | None = "36fc97eba201"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# predeploy: allow renaming-column -- the app maps both names since 2.14 (one release)
def upgrade() -> None:
    op.alter_column(
        "app_user",
        "full_name",
        new_column_name="display_name",
        existing_type=sa.String(length=200),
        existing_nullable=True,
    )


def downgrade() -> None:
    op.alter_column(
        "app_user",
        "display_name",
        new_column_name="full_name",
        existing_type=sa.String(length=200),
        existing_nullable=True,
    )
