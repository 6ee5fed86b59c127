"""empty message

Revision ID: 0917d475648e
Revises: 627067246ae9
Create Date: 2024-06-10 18:31:02.557118

"""

from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = "0917d475648e"
down_revision: str | None = "627067246ae9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
