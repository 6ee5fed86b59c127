"""add missing foreign key invoice.organization_id

The invoice table went out without it in fcda2ea4715f. The name comes from the
naming convention on the models' metadata: fk_invoice_organization_id_organization.

Revision ID: bc1e676710ba
Revises: 988a12cb0408
Create Date: 2023-05-08 12:44:31.876512

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "bc1e676710ba"
down_revision = "988a12cb0408"
branch_labels = None
depends_on = None


def upgrade():
    op.create_foreign_key(
        None, "invoice", "organization", ["organization_id"], ["id"], ondelete="CASCADE"
    )
    op.create_index(op.f("ix_invoice_organization_id"), "invoice", ["organization_id"])


def downgrade():
    op.drop_index(op.f("ix_invoice_organization_id"), table_name="invoice")
    # autogenerate wrote drop_constraint(None, ...) here, which cannot run: name it
    op.drop_constraint(
        op.f("fk_invoice_organization_id_organization"), "invoice", type_="foreignkey"
    )
