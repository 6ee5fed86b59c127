"""membership role check

Revision ID: 36fc97eba201
Revises: c35ea8c78fd8
Create Date: 2024-07-01 13:56:11.214587

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "36fc97eba201"
down_revision: str | None = "c35ea8c78fd8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # named "role_valid"; the ck naming convention makes it ck_membership_role_valid
    op.create_check_constraint(
        "role_valid", "membership", "role IN ('owner', 'admin', 'member', 'billing')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_membership_role_valid"), "membership", type_="check")
