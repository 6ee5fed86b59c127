"""invoice_line amount check

Revision ID: 918b9a7dd804
Revises: ecab293c4031
Create Date: 2024-10-21 12:37:18.945130

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "918b9a7dd804"
down_revision: str | None = "ecab293c4031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_check_constraint("amount_non_negative", "invoice_line", "amount >= 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_invoice_line_amount_non_negative"), "invoice_line", type_="check")
