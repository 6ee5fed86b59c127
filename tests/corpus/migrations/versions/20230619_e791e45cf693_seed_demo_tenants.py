"""seed demo tenants

Three demo organizations for sales demos and for staging, with a year of invoices each
so the dashboards have something to show. Everything lives under *-demo slugs and
@*-demo.example addresses, which the downgrade removes again.

Revision ID: e791e45cf693
Revises: 5c32e256e17e
Create Date: 2023-06-19 14:20:09.518877

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "e791e45cf693"
down_revision = "5c32e256e17e"
branch_labels = None
depends_on = None

DEMO_ORGS = "SELECT id FROM organization WHERE slug IN ('acme-demo', 'globex-demo', 'initech-demo')"


def upgrade():
    op.execute(
        "INSERT INTO organization (name, slug) VALUES "
        "('Acme Demo Ltd', 'acme-demo'), "
        "('Globex Demo Inc', 'globex-demo'), "
        "('Initech Demo LLC', 'initech-demo')"
    )
    op.execute(
        f"""
        INSERT INTO app_user (email, full_name)
        SELECT r.role || '@' || o.slug || '.example', o.name || ' ' || r.role
        FROM organization o
        CROSS JOIN (VALUES ('owner'), ('billing')) AS r (role)
        WHERE o.id IN ({DEMO_ORGS})
        """
    )
    op.execute(
        f"""
        INSERT INTO membership (organization_id, user_id, role)
        SELECT o.id, u.id, split_part(u.email, '@', 1)
        FROM organization o
        JOIN app_user u ON u.email LIKE '%@' || o.slug || '.example'
        WHERE o.id IN ({DEMO_ORGS})
        """
    )
    # Globex and Initech are still on their trial (spelt 'trialling' back then).
    op.execute(
        """
        INSERT INTO subscription (organization_id, plan_id, status, seats)
        SELECT o.id, p.id, d.status, d.seats
        FROM (VALUES ('acme-demo', 'pro', 'active', 5),
                     ('globex-demo', 'business', 'trialling', 25),
                     ('initech-demo', 'free', 'trialling', 3)) AS d (slug, plan, status, seats)
        JOIN organization o ON o.slug = d.slug
        JOIN plan p ON p.code = d.plan
        """
    )
    # 400 invoices per tenant: every 10th uncollectible, every 4th still open, the rest
    # paid; totals cycle through 0.00 .. 60.00.
    op.execute(
        """
        INSERT INTO invoice (organization_id, subscription_id, number, status, currency,
                             total, issued_at, due_at)
        SELECT s.organization_id,
               s.id,
               'DEMO-' || s.id || '-' || lpad(g::text, 5, '0'),
               (CASE WHEN g % 10 = 0 THEN 'uncollectible'
                     WHEN g % 4 = 0 THEN 'open'
                     ELSE 'paid' END)::invoice_status,
               'USD',
               ((g % 7) * 10)::numeric(12, 2),
               DATE '2022-06-01' + g,
               DATE '2022-06-01' + g + 30
        FROM subscription s
        CROSS JOIN generate_series(1, 400) AS g
        """
    )
    op.execute(
        f"""
        INSERT INTO invoice_line (invoice_id, description, quantity, unit_amount, amount)
        SELECT id, 'Demo subscription fee', 1, total, total
        FROM invoice
        WHERE organization_id IN ({DEMO_ORGS})
        """
    )
    op.execute(
        f"""
        INSERT INTO payment (invoice_id, amount, provider, provider_ref, received_at)
        SELECT id, total, 'stripe_v1', 'ch_demo_' || id, issued_at + interval '3 days'
        FROM invoice
        WHERE status = 'paid' AND total > 0 AND organization_id IN ({DEMO_ORGS})
        """
    )
    op.execute(
        f"""
        INSERT INTO audit_event (organization_id, actor_user_id, action, payload, created_at)
        SELECT i.organization_id, m.user_id, 'invoice.created',
               jsonb_build_object('invoice_id', i.id,
                                  'ip', '203.0.113.' || (i.id % 250),
                                  'user_agent', 'demo-seed/1.0'),
               i.issued_at
        FROM invoice i
        JOIN membership m ON m.organization_id = i.organization_id AND m.role = 'owner'
        WHERE i.organization_id IN ({DEMO_ORGS})
        """
    )
    op.execute(
        f"""
        INSERT INTO invoice_tag (invoice_id, tag_id)
        SELECT i.id, t.id
        FROM invoice i
        JOIN tag t ON t.organization_id IS NULL AND t.name = '\\:overdue'
        WHERE i.status = 'open' AND i.organization_id IN ({DEMO_ORGS})
        """
    )


def downgrade():
    op.execute(
        f"DELETE FROM payment WHERE invoice_id IN "
        f"(SELECT id FROM invoice WHERE organization_id IN ({DEMO_ORGS}))"
    )
    # invoices, lines, tags, subscriptions, memberships and audit events cascade
    op.execute(f"DELETE FROM organization WHERE id IN ({DEMO_ORGS})")
    op.execute(
        "DELETE FROM app_user WHERE email LIKE '%@acme-demo.example' "
        "OR email LIKE '%@globex-demo.example' OR email LIKE '%@initech-demo.example'"
    )
