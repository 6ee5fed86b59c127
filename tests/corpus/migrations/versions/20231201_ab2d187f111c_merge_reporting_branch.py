"""merge reporting branch

Revision ID: ab2d187f111c
Revises: 1cf7cd285418, b76b9d003e4a
Create Date: 2023-12-01 09:05:51.239907

"""

from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = "ab2d187f111c"
down_revision: str | Sequence[str] | None = ("1cf7cd285418", "b76b9d003e4a")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
