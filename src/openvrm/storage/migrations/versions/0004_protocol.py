"""protocol: connections, connection events, grants, nonces, idempotency

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "protocol_nonces",
        sa.Column("keyid", sa.String(length=200), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("keyid", "nonce"),
    )
    op.create_index("ix_protocol_nonces_expires_at", "protocol_nonces", ["expires_at"])
    op.create_table(
        "protocol_idempotency",
        sa.Column("keyid", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("keyid", "key"),
    )
    op.create_index("ix_protocol_idempotency_expires_at", "protocol_idempotency", ["expires_at"])
    op.create_table(
        "connections",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("handle", sa.String(length=64), nullable=False),
        sa.Column("vendor_did", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("vendor_id", sa.String(length=32), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["vendor_id"], ["vendors.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("handle"),
    )
    op.create_index("ix_connections_vendor_did", "connections", ["vendor_did"])
    op.create_index("ix_connections_vendor_id", "connections", ["vendor_id"])
    op.create_table(
        "connection_events",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("connection_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=80), nullable=False),
        sa.Column("author", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_connection_events_order", "connection_events", ["connection_id", "position"], unique=True
    )
    op.create_index("ix_connection_events_event_id", "connection_events", ["event_id"])
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("connection_id", sa.String(length=32), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("vendor_box", sa.LargeBinary(), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_grants_connection_id", "grants", ["connection_id"])


def downgrade() -> None:
    op.drop_index("ix_grants_connection_id", table_name="grants")
    op.drop_table("grants")
    op.drop_index("ix_connection_events_event_id", table_name="connection_events")
    op.drop_index("ix_connection_events_order", table_name="connection_events")
    op.drop_table("connection_events")
    op.drop_index("ix_connections_vendor_id", table_name="connections")
    op.drop_index("ix_connections_vendor_did", table_name="connections")
    op.drop_table("connections")
    op.drop_index("ix_protocol_idempotency_expires_at", table_name="protocol_idempotency")
    op.drop_table("protocol_idempotency")
    op.drop_index("ix_protocol_nonces_expires_at", table_name="protocol_nonces")
    op.drop_table("protocol_nonces")
