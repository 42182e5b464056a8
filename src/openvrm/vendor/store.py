"""The vendor kit's own store: relationships, ledger events, data requests, grants, nonces, idempotency.

Its tables live on their own :class:`~sqlalchemy.orm.DeclarativeBase` (all named ``vendor_*``), created
with ``create_all`` when the store opens, on SQLite or PostgreSQL. The nonce and idempotency tables have
the columns :class:`~openvrm.protocol.stores.SqlNonceStore` and
:class:`~openvrm.protocol.stores.SqlIdempotencyStore` expect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from openvrm.storage.db import Database
from openvrm.storage.models import IdempotencyColumns, NonceColumns, UTCDateTime

HASH = 80
DID = 200
URL = 2048


class VendorBase(DeclarativeBase):
    pass


class Relationship(VendorBase):
    """One agreement with one person (a pairwise did:key), and where their agent is."""

    __tablename__ = "vendor_relationships"

    agreement_id: Mapped[str] = mapped_column(String(HASH), primary_key=True)
    person_did: Mapped[str] = mapped_column(String(DID), index=True)
    status: Mapped[str] = mapped_column(String(16))  # active | ended
    term_id: Mapped[str] = mapped_column(String(100))
    term_version: Mapped[str] = mapped_column(String(32))
    proffer: Mapped[dict[str, Any]] = mapped_column(JSON)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    agreement: Mapped[dict[str, Any]] = mapped_column(JSON)
    ledger_url: Mapped[str | None] = mapped_column(String(URL), nullable=True)
    grants_url: Mapped[str | None] = mapped_column(String(URL), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PendingProffer(VendorBase):
    """A proffer we answered, so the agreement that follows can be checked against our answer."""

    __tablename__ = "vendor_proffers"

    proffer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    proffer_hash: Mapped[str] = mapped_column(String(HASH), index=True)
    person_did: Mapped[str] = mapped_column(String(DID))
    proffer: Mapped[dict[str, Any]] = mapped_column(JSON)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    decision: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerEntry(VendorBase):
    """One event of a relationship's ledger, in the order we recorded it, with its acknowledgement.

    ``state``: ``acked`` (we hold the other party's ack, or we acked the person's event), ``pending``
    (our event, not yet delivered), ``delivered`` (the agent queued it; its ack comes later), ``refused``
    (the agent refused it; it is not part of our lane).
    """

    __tablename__ = "vendor_events"
    __table_args__ = (UniqueConstraint("agreement_id", "position", name="uq_vendor_events_position"),)

    event_id: Mapped[str] = mapped_column(String(HASH), primary_key=True)
    agreement_id: Mapped[str] = mapped_column(String(HASH), index=True)
    position: Mapped[int] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(8))  # person | vendor
    subtype: Mapped[str] = mapped_column(String(32))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    ack: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DataRequest(VendorBase):
    __tablename__ = "vendor_data_requests"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agreement_id: Mapped[str] = mapped_column(String(HASH), index=True)
    event_id: Mapped[str] = mapped_column(String(HASH))
    fields: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(URL))
    why: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # pending | approved | denied
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class GrantRecord(VendorBase):
    """A grant the person made (the event's payload only: the values stay at the agent, sealed)."""

    __tablename__ = "vendor_grants"

    grant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agreement_id: Mapped[str] = mapped_column(String(HASH), index=True)
    fields: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str | None] = mapped_column(String(URL), nullable=True)
    until: Mapped[str | None] = mapped_column(String(40), nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # active | revoked
    event_id: Mapped[str] = mapped_column(String(HASH))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VendorNonce(NonceColumns, VendorBase):
    __tablename__ = "vendor_protocol_nonces"


class VendorIdempotency(IdempotencyColumns, VendorBase):
    __tablename__ = "vendor_protocol_idempotency"


class RelayRecord(VendorBase):
    """A relay this vendor registered at: its did:key (which signs its webhooks) and our feed cursor."""

    __tablename__ = "vendor_relays"

    relay_url: Mapped[str] = mapped_column(String(URL), primary_key=True)
    relay_did: Mapped[str] = mapped_column(String(DID), index=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    webhook: Mapped[str | None] = mapped_column(String(URL), nullable=True)
    registered: Mapped[bool] = mapped_column(Boolean, default=False)
    cursor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReceivedIntent(VendorBase):
    """An intent a relay delivered to us (webhook or feed), what we did with it and how it ended.

    ``state``: ``open`` (received, not answered), ``offered`` (we sent an offer), ``accepted`` (the person
    chose our offer), ``declined`` (another offer was chosen), ``closed`` (withdrawn or expired).
    """

    __tablename__ = "vendor_received_intents"

    intent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    relay: Mapped[str] = mapped_column(String(URL))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(100), index=True)
    expires_at: Mapped[str] = mapped_column(String(40))
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    offer_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    agreement_id: Mapped[str | None] = mapped_column(String(HASH), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SentOffer(VendorBase):
    """An offer we sealed and sent to a relay (the signed offer, kept as both parties keep it)."""

    __tablename__ = "vendor_sent_offers"

    offer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    intent_id: Mapped[str] = mapped_column(String(64), index=True)
    relay: Mapped[str] = mapped_column(String(URL))
    offer: Mapped[dict[str, Any]] = mapped_column(JSON)
    rule: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IntentLink(VendorBase):
    """A relationship that started from one of our accepted offers (the proffer's ``intent`` member)."""

    __tablename__ = "vendor_intent_links"

    agreement_id: Mapped[str] = mapped_column(String(HASH), primary_key=True)
    intent_id: Mapped[str] = mapped_column(String(64), index=True)
    offer_id: Mapped[str] = mapped_column(String(64))
    ours: Mapped[bool] = mapped_column(Boolean)
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime)


def open_store(url: str) -> Database:
    """Open (and create, if needed) the vendor store at the SQLAlchemy ``url``."""
    db = Database(url)
    with db._translate():  # noqa: SLF001 - the same error translation as every store operation
        VendorBase.metadata.create_all(db.engine)
    return db
