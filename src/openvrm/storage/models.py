"""Typed SQLAlchemy models of the vault.

Layout rule: a table keeps in the clear only what is needed to find rows (ids, foreign keys, timestamps,
a keyed content address); everything a person wrote or that describes them is in the ``sealed`` column,
one AES-256-GCM ciphertext of a JSON object bound to ``<table>:<id>`` as associated data.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_id_lock = threading.Lock()
_last_ns = 0


def new_id() -> str:
    """A 32-hex-digit id that sorts by creation time: 16 digits of nanoseconds, 16 random.

    Time-ordered ids let append-only tables (profile history) be read in order without a sequence.
    """
    global _last_ns
    with _id_lock:
        now = max(time.time_ns(), _last_ns + 1)
        _last_ns = now
    return f"{now:016x}{secrets.token_hex(8)}"


BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class VaultMeta(Base):
    """One row: the wrapped vault key, its KDF parameters and the box key pair."""

    __tablename__ = "vault_meta"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vault_id: Mapped[str] = mapped_column(String(32), unique=True)
    kdf: Mapped[dict[str, Any]] = mapped_column(JSON)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    box_public: Mapped[bytes] = mapped_column(LargeBinary)
    box_secret: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProfileChange(Base):
    """Append-only history of profile fields; the current profile is the fold of all changes."""

    __tablename__ = "profile_changes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Vendor(Base):
    __tablename__ = "vendors"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Relationship(Base):
    __tablename__ = "relationships"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vendor_id: Mapped[str | None] = mapped_column(ForeignKey("vendors.id", ondelete="SET NULL"), index=True)
    relationship_id: Mapped[str | None] = mapped_column(
        ForeignKey("relationships.id", ondelete="SET NULL"), index=True
    )
    blob_address: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class ProfileShare(Base):
    """A profile field shared with a relationship (the protocol issue adds terms and consent records)."""

    __tablename__ = "profile_shares"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    relationship_id: Mapped[str] = mapped_column(
        ForeignKey("relationships.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class InboxItem(Base):
    """An item sealed to the vault's box public key, accepted while the vault may be locked."""

    __tablename__ = "inbox_items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sealed_box: Mapped[bytes] = mapped_column(LargeBinary)


class AccessToken(Base):
    """API tokens and CLI sessions: each wraps the vault key under its own 256-bit random secret."""

    __tablename__ = "access_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Blob(Base):
    """Sealed file contents when the blob store is the database (the default on PostgreSQL)."""

    __tablename__ = "blobs"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigIntId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Contract(Base):
    """A contract or subscription with a vendor: plan, price, cycle, term, notice, price history."""

    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="RESTRICT"), index=True)
    relationship_id: Mapped[str | None] = mapped_column(
        ForeignKey("relationships.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Payment(Base):
    """A payment actually made (against a contract's expected payment, or a bill)."""

    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    contract_id: Mapped[str | None] = mapped_column(
        ForeignKey("contracts.id", ondelete="CASCADE"), index=True
    )
    vendor_id: Mapped[str | None] = mapped_column(ForeignKey("vendors.id", ondelete="SET NULL"), index=True)
    document_id: Mapped[str | None] = mapped_column(
        ForeignKey("documents.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class DocumentText(Base):
    """The extracted text of a document, sealed apart so listing documents stays cheap."""

    __tablename__ = "document_texts"

    id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


# Tables whose rows carry a ``sealed`` column bound to "<table>:<id>"; `vrm check`, backup and export
# walk this list, so a new sealed table only needs adding here.
SEALED_TABLES: tuple[type[Base], ...] = (
    ProfileChange,
    Vendor,
    Relationship,
    Document,
    ProfileShare,
    AccessToken,
    Contract,
    Payment,
    DocumentText,
)


# -- rights, moves and the outbox (0003) ---------------------------------------------------------------


class SealedSetting(Base):
    """A named setting of the vault (the person's SMTP server, ...), sealed like every record."""

    __tablename__ = "sealed_settings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class OutboxMessage(Base):
    """A message to the outside world, written in the transaction that caused it, delivered later.

    Only what the worker needs to pick due messages is plain: status, attempts, next attempt, and a
    unique idempotency key made of record ids. Recipients, bodies and errors are sealed.
    """

    __tablename__ = "outbox_messages"
    # The worker's question, "the oldest due pending message", is one walk of this index.
    __table_args__ = (Index("ix_outbox_messages_due", "status", "next_attempt_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class RightsRequest(Base):
    """A GDPR request to a vendor (access, erasure, ...), its letter, deadlines and history."""

    __tablename__ = "rights_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Move(Base):
    """A change of a profile field carried to every vendor that holds the old value."""

    __tablename__ = "moves"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


SEALED_TABLES = (*SEALED_TABLES, SealedSetting, OutboxMessage, RightsRequest, Move)


# -- the protocol: connections to vendors, their ledgers, grants, nonces, idempotency (0004) ----------------


class NonceColumns:
    """The columns of a nonce table (openvrm.protocol.stores.SqlNonceStore); the agent, the vendor kit and
    the relay each keep one in their own store."""

    keyid: Mapped[str] = mapped_column(String(200), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class IdempotencyColumns:
    """The columns of an idempotency table (openvrm.protocol.stores.SqlIdempotencyStore)."""

    keyid: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ProtocolNonce(NonceColumns, Base):
    """A (keyid, nonce) pair seen on a signed request, kept until it can no longer be replayed."""

    __tablename__ = "protocol_nonces"


class ProtocolIdempotency(IdempotencyColumns, Base):
    """The first response to a signed write, replayed when the same signer sends the same key again."""

    __tablename__ = "protocol_idempotency"


class Connection(Base):
    """A protocol relationship with a vendor: the pairwise key, the agreement, the vendor's endpoints.

    Plain: the random ``handle`` in the agent URLs given to the vendor, the vendor's public did:key and the
    status, so signed requests can be checked (and a blocked or ended vendor refused) while the vault is
    locked. Everything else, the person's key included, is sealed.
    """

    __tablename__ = "connections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    vendor_did: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16))
    vendor_id: Mapped[str | None] = mapped_column(
        ForeignKey("vendors.id", ondelete="SET NULL"), index=True, nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class ConnectionEvent(Base):
    """One ledger event of a connection (and its acknowledgement), in the order it was recorded."""

    __tablename__ = "connection_events"
    __table_args__ = (Index("ix_connection_events_order", "connection_id", "position", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(80), index=True)
    author: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Grant(Base):
    """Profile fields granted to a connection. ``vendor_box`` holds the values sealed to the vendor's key,
    served while the vault is locked; revoking clears it at once. ``until`` and ``revoked_at`` are plain
    so an expired or revoked grant is refused without the vault key."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"), index=True)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    vendor_box: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


SEALED_TABLES = (*SEALED_TABLES, Connection, ConnectionEvent, Grant)


# -- intentcasting: the person's intents and the offers they drew (0005) ----------------------------------


class Intent(Base):
    """A personal request for offers (or a standing interest). Its pseudonymous key and content are
    sealed; the state and expiry are plain so expired intents can be closed without reading them."""

    __tablename__ = "intents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class IntentOffer(Base):
    """An offer received for an intent: the sealed envelope as the relay gave it, and the opened offer."""

    __tablename__ = "intent_offers"
    __table_args__ = (Index("ix_intent_offers_offer", "intent_id", "offer_id", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    intent_id: Mapped[str] = mapped_column(ForeignKey("intents.id", ondelete="CASCADE"))
    offer_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


SEALED_TABLES = (*SEALED_TABLES, Intent, IntentOffer)


# -- the relationship mailbox: aliases, reverse aliases, the gateway's spool, filed messages (0006) ----------
#
# The SMTP gateway runs without the vault key. It holds the *mail key* only (HKDF of the vault key, handed
# to `vrm mail serve` at start), which opens the routing rows below and nothing else. Addresses are found
# by a keyed hash (``lookup``), never stored in the clear; what the gateway keeps for the person goes into
# the sealed inbox (box key), which only an unlocked vault opens.


class MailState(Base):
    """Gateway settings (domains, the real address, the downstream server), sealed by the mail key."""

    __tablename__ = "mail_state"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class MailAlias(Base):
    """One address given to one vendor. ``lookup`` is the keyed hash of the address; ``state`` is plain
    so the gateway can refuse a disabled alias before opening anything."""

    __tablename__ = "mail_aliases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    lookup: Mapped[str] = mapped_column(String(64), unique=True)
    vendor_id: Mapped[str | None] = mapped_column(
        ForeignKey("vendors.id", ondelete="CASCADE"), index=True, nullable=True
    )
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class MailReverseAlias(Base):
    """The address the person replies to, one per (alias, vendor contact); ``pair`` finds it again."""

    __tablename__ = "mail_reverse_aliases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    lookup: Mapped[str] = mapped_column(String(64), unique=True)
    pair: Mapped[str] = mapped_column(String(64), unique=True)
    alias_id: Mapped[str] = mapped_column(ForeignKey("mail_aliases.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class MailSpool(Base):
    """A message the gateway owes a downstream server, sealed by the mail key until it is delivered."""

    __tablename__ = "mail_spool"
    __table_args__ = (Index("ix_mail_spool_due", "state", "next_attempt_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class MailMessage(Base):
    """A message filed from the inbox: who wrote, to which alias, what the checks said (vault key)."""

    __tablename__ = "mail_messages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vendor_id: Mapped[str | None] = mapped_column(
        ForeignKey("vendors.id", ondelete="SET NULL"), index=True, nullable=True
    )
    alias_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


SEALED_TABLES = (*SEALED_TABLES, MailMessage)
MAIL_KEY_TABLES = (MailState, MailAlias, MailReverseAlias, MailSpool)
