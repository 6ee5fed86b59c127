"""The shop's tables, as Flask-SQLAlchemy models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import db


class Customer(db.Model):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    joined_at: Mapped[datetime] = mapped_column(server_default=func.now())
    orders: Mapped[list[Order]] = relationship(back_populates="customer")


class Order(db.Model):
    __tablename__ = "purchase_order"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    total_cents: Mapped[int]
    note: Mapped[str | None] = mapped_column(String(500))
    customer: Mapped[Customer] = relationship(back_populates="orders")
