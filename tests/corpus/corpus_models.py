"""The corpus schema at head (38843a76a58b), as SQLAlchemy Core tables.

`alembic -c tests/corpus/alembic.ini check` compares the database after `upgrade head`
with this metadata, so it has to match what the revisions build, column for column.
The naming convention is the one the revisions rely on when they pass None (or a bare
check name) to op.create_foreign_key / create_unique_constraint / create_check_constraint.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import CITEXT, JSONB, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

NOW = text("now()")
EMPTY_OBJECT = text("'{}'::jsonb")
EMPTY_ARRAY = text("'[]'::jsonb")
GEN_RANDOM_UUID = text("gen_random_uuid()")


def created_at() -> Column:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW)


organization = Table(
    "organization",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("slug", String(64), nullable=False),
    created_at(),
    Column("public_id", UUID(as_uuid=True), nullable=False, server_default=GEN_RANDOM_UUID),
    Column("settings", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("billing_email", CITEXT, nullable=True),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("slug"),
    UniqueConstraint("public_id"),
    # d5c846888ac0 builds it with raw SQL (CREATE INDEX ... USING gin (name gin_trgm_ops))
    Index(
        "ix_organization_name_trgm",
        "name",
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    ),
)

app_user = Table(
    "app_user",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", CITEXT, nullable=False),
    Column("display_name", String(200), nullable=True),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    created_at(),
    Column("last_login_at", DateTime(timezone=True), nullable=True),
    Column("is_staff", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("email"),
)

membership = Table(
    "membership",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "organization_id",
        Integer,
        ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", Integer, ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(32), nullable=False, server_default="member"),
    created_at(),
    Column(
        "invited_by_user_id",
        Integer,
        ForeignKey("app_user.id", ondelete="SET NULL"),
        nullable=True,
    ),
    UniqueConstraint("organization_id", "user_id"),
    CheckConstraint("role IN ('owner', 'admin', 'member', 'billing')", name="role_valid"),
    Index("ix_membership_user_id", "user_id"),
)

plan = Table(
    "plan",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(32), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", Text, nullable=True),
    Column("price_monthly", Numeric(12, 2), nullable=False, server_default="0"),
    Column("is_public", Boolean, nullable=False, server_default=text("true")),
    created_at(),
    Column("max_seats", Integer, nullable=True),
    Column("features", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    UniqueConstraint("code"),
    CheckConstraint("price_monthly >= 0", name="price_non_negative"),
)

subscription = Table(
    "subscription",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "organization_id",
        Integer,
        ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("plan_id", Integer, ForeignKey("plan.id", ondelete="RESTRICT"), nullable=False),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("seats", Integer, nullable=False, server_default="1"),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("cancelled_at", DateTime(timezone=True), nullable=True),
    Column("current_period_end", DateTime(timezone=True), nullable=True),
    Column("cancel_reason", Text, nullable=True),
    CheckConstraint("seats > 0", name="seats_positive"),
    CheckConstraint("status IN ('trial', 'active', 'past_due', 'cancelled')", name="status_valid"),
    Index("ix_subscription_organization_id", "organization_id"),
)

invoice = Table(
    "invoice",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "organization_id",
        Integer,
        ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "subscription_id",
        Integer,
        ForeignKey("subscription.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("number", String(32), nullable=False),
    Column(
        "status",
        Enum("draft", "open", "paid", "uncollectible", "void", name="invoice_status"),
        nullable=False,
        server_default="draft",
    ),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("total", Numeric(12, 2), nullable=False, server_default="0"),
    Column("issued_at", DateTime(timezone=True), nullable=True),
    Column("due_at", DateTime(timezone=True), nullable=True),
    created_at(),
    Column("paid_at", DateTime(timezone=True), nullable=True),
    Column("public_id", UUID, nullable=False, server_default=GEN_RANDOM_UUID),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    UniqueConstraint("number"),
    UniqueConstraint("public_id"),
    CheckConstraint("currency = upper(currency)", name="currency_upper"),
    Index("ix_invoice_organization_id", "organization_id"),
    Index("ix_invoice_due_at", "due_at"),
    Index("ix_invoice_organization_id_status", "organization_id", "status"),
)

invoice_line = Table(
    "invoice_line",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("invoice_id", Integer, ForeignKey("invoice.id", ondelete="CASCADE"), nullable=False),
    Column("description", String(500), nullable=False),
    Column("quantity", Integer, nullable=False, server_default="1"),
    Column("unit_amount", Numeric(12, 2), nullable=False),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("sku", String(64), nullable=True),
    Column("tax_rate", Numeric(5, 2), nullable=False, server_default="0"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("amount >= 0", name="amount_non_negative"),
    CheckConstraint("tax_rate >= 0 AND tax_rate < 100", name="tax_rate_range"),
    Index("ix_invoice_line_invoice_id", "invoice_id"),
)

payment = Table(
    "payment",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("invoice_id", Integer, ForeignKey("invoice.id", ondelete="RESTRICT"), nullable=False),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("external_id", String(128), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("raw", JSONB, nullable=True),
    CheckConstraint("amount > 0", name="amount_positive"),
    Index("ix_payment_invoice_id", "invoice_id"),
    # 68ac0b3f28e4 builds it with raw CREATE INDEX CONCURRENTLY
    Index("ix_payment_received_at", "received_at"),
)

audit_event = Table(
    "audit_event",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "organization_id",
        Integer,
        ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "actor_user_id",
        Integer,
        ForeignKey("app_user.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("action", String(64), nullable=False),
    Column("payload", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    created_at(),
    Index("ix_audit_event_created_at", "created_at"),
    Index("ix_audit_event_organization_id_created_at", "organization_id", "created_at"),
    Index("ix_audit_event_actor_user_id", "actor_user_id"),
    # An expression index (4ffc8201854b). Alembic 1.20 reflects and compares it without a
    # warning, so it stays in the models.
    Index("ix_audit_event_payload_invoice_id", text("(payload ->> 'invoice_id')")),
)

api_key = Table(
    "api_key",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "organization_id",
        Integer,
        ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(100), nullable=False),
    Column("prefix", String(12), nullable=False),
    Column("key_hash", String(128), nullable=False),
    created_at(),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("scopes", JSONB, nullable=False, server_default=EMPTY_ARRAY),
    UniqueConstraint("prefix"),
    Index("ix_api_key_organization_id", "organization_id"),
)

tag = Table(
    "tag",
    metadata,
    Column("id", Integer, primary_key=True),
    # NULL: a built-in tag (name starting with ':'), shared by every organization
    Column(
        "organization_id",
        Integer,
        ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("name", String(64), nullable=False),
    created_at(),
    Column("color", String(7), nullable=False, server_default="#6b7280"),
    UniqueConstraint("organization_id", "name"),
    CheckConstraint("color ~ '^#[0-9a-f]{6}$'", name="color_hex"),
)

invoice_tag = Table(
    "invoice_tag",
    metadata,
    Column("invoice_id", Integer, ForeignKey("invoice.id", ondelete="CASCADE"), nullable=False),
    Column("tag_id", Integer, ForeignKey("tag.id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("invoice_id", "tag_id"),
    Index("ix_invoice_tag_tag_id", "tag_id"),
)

revenue_daily = Table(
    "revenue_daily",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "organization_id",
        Integer,
        ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("day", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", Numeric(12, 2), nullable=False, server_default="0"),
    Column("invoice_count", Integer, nullable=False, server_default="0"),
    UniqueConstraint("organization_id", "day", "currency"),
    Index("ix_revenue_daily_day", "day"),
)

usage_record = Table(
    "usage_record",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column(
        "subscription_id",
        Integer,
        ForeignKey("subscription.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("metric", String(64), nullable=False),
    Column("quantity", BigInteger, nullable=False, server_default="0"),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("properties", JSONB, nullable=True),
    CheckConstraint("quantity >= 0", name="quantity_non_negative"),
    Index("ix_usage_record_subscription_id_recorded_at", "subscription_id", "recorded_at"),
)

webhook_endpoint = Table(
    "webhook_endpoint",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "organization_id",
        Integer,
        ForeignKey("organization.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("url", Text, nullable=False),
    Column(
        "secret",
        String(64),
        nullable=False,
        server_default=text("encode(gen_random_bytes(24), 'hex'::text)"),
    ),
    Column("is_enabled", Boolean, nullable=False, server_default=text("true")),
    Column("event_types", JSONB, nullable=False, server_default=EMPTY_ARRAY),
    created_at(),
    CheckConstraint("url LIKE 'https://%'", name="url_https"),
    Index("ix_webhook_endpoint_organization_id", "organization_id"),
)
