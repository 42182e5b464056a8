"""The relay's own store (tables ``relay_*`` on their own metadata), on SQLite or PostgreSQL.

Subscriptions are indexed by their filters: one row per category, region and keyword in the
``relay_subscription_*`` tables, each indexed on its first column, so matching an intent is a few index
lookups (:mod:`openvrm.relay.matching`). ``relay_deliveries`` is both the webhook queue and the vendors'
pull feed: its autoincrement id is the feed cursor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from openvrm.storage.db import Database
from openvrm.storage.models import IdempotencyColumns, NonceColumns, UTCDateTime

DID = 200
URL = 2048
UUID = 36
# BIGINT everywhere except SQLite, where only INTEGER PRIMARY KEY is an autoincrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class RelayBase(DeclarativeBase):
    pass


class Vendor(RelayBase):
    __tablename__ = "relay_vendors"

    did: Mapped[str] = mapped_column(String(DID), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    webhook: Mapped[str | None] = mapped_column(String(URL), nullable=True)
    discovery: Mapped[str | None] = mapped_column(String(URL), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Subscription(RelayBase):
    """A vendor's filter; amounts are integer cents, ``currency`` applies to both bounds."""

    __tablename__ = "relay_subscriptions"

    id: Mapped[str] = mapped_column(String(UUID), primary_key=True)
    vendor: Mapped[str] = mapped_column(String(DID), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    price_min: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    price_max: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    any_region: Mapped[bool] = mapped_column(Boolean)
    any_keyword: Mapped[bool] = mapped_column(Boolean)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON)  # the body as given, for GET /subscriptions
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SubscriptionCategory(RelayBase):
    __tablename__ = "relay_subscription_categories"
    __table_args__ = (Index("ix_relay_subscription_categories_category", "category"),)

    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(UUID), primary_key=True, index=True)


class SubscriptionRegion(RelayBase):
    __tablename__ = "relay_subscription_regions"
    __table_args__ = (Index("ix_relay_subscription_regions_region", "region"),)

    region: Mapped[str] = mapped_column(String(10), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(UUID), primary_key=True, index=True)


class SubscriptionKeyword(RelayBase):
    __tablename__ = "relay_subscription_keywords"
    __table_args__ = (Index("ix_relay_subscription_keywords_keyword", "keyword"),)

    keyword: Mapped[str] = mapped_column(String(60), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(UUID), primary_key=True, index=True)


class Intent(RelayBase):
    """A published intent (pseudonymous: its author key is made for it alone)."""

    __tablename__ = "relay_intents"

    intent_id: Mapped[str] = mapped_column(String(UUID), primary_key=True)
    author: Mapped[str] = mapped_column(String(DID), index=True)
    category: Mapped[str] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    region: Mapped[str | None] = mapped_column(String(110), nullable=True)
    price_max: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)  # open | accepted | withdrawn | expired
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Offer(RelayBase):
    """A sealed-offer envelope; ``seq`` orders an intent's offers (the ``after`` cursor)."""

    __tablename__ = "relay_offers"
    __table_args__ = (UniqueConstraint("intent_id", "vendor", "offer_id", name="uq_relay_offers_ivo"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    offer_id: Mapped[str] = mapped_column(String(UUID), unique=True)
    intent_id: Mapped[str] = mapped_column(String(UUID), index=True)
    vendor: Mapped[str] = mapped_column(String(DID))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Delivery(RelayBase):
    """One message for one vendor: ``kind`` intent or decision (the intent's closing message).

    ``status``: pending (the worker will POST it), delivered, failed (gave up), pull-only (no webhook).
    Every row, whatever its status, is in the vendor's pull feed; ``id`` is the feed cursor.
    """

    __tablename__ = "relay_deliveries"
    __table_args__ = (
        UniqueConstraint("vendor", "intent_id", "kind", name="uq_relay_deliveries_vik"),
        Index("ix_relay_deliveries_due", "status", "next_attempt_at"),
        Index("ix_relay_deliveries_feed", "vendor", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(DID))
    intent_id: Mapped[str] = mapped_column(String(UUID), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RelayNonce(NonceColumns, RelayBase):
    __tablename__ = "relay_protocol_nonces"


class RelayIdempotency(IdempotencyColumns, RelayBase):
    __tablename__ = "relay_protocol_idempotency"


def open_store(url: str) -> Database:
    """Open (and create, if needed) the relay store at the SQLAlchemy ``url``."""
    db = Database(url)
    with db._translate():  # noqa: SLF001 - the same error translation as every store operation
        RelayBase.metadata.create_all(db.engine)
    return db
