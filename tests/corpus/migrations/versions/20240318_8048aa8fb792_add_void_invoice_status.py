"""add 'void' to invoice_status

Revision ID: 8048aa8fb792
Revises: 68ac0b3f28e4
Create Date: 2024-03-18 13:29:42.218813

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "8048aa8fb792"
down_revision: str | None = "68ac0b3f28e4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ALTER TYPE ... ADD VALUE could not run in a transaction block before PostgreSQL 12,
    # and the new value cannot be used in the transaction that added it in any version.
    with op.get_context().autocommit_block():
        op.execute("ALTER TYPE invoice_status ADD VALUE IF NOT EXISTS 'void'")


def downgrade() -> None:
    # PostgreSQL cannot drop a value from an enum; an unused 'void' is harmless.
    pass
