"""strip IP addresses and user agents from audit payloads

Data-protection review DP-112: the audit log must not keep client IPs or user agents.

Revision ID: d6e52182f3d2
Revises: 4ffc8201854b
Create Date: 2024-09-09 10:45:33.016658

"""

from alembic import op

revision = "d6e52182f3d2"
down_revision = "4ffc8201854b"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "UPDATE audit_event SET payload = payload - 'ip' - 'user_agent' "
        "WHERE payload ?| array['ip', 'user_agent']"
    )


def downgrade():
    raise NotImplementedError("irreversible: the removed IP addresses and user agents are gone")
