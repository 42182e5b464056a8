"""the relationship mailbox: aliases, reverse aliases, the gateway spool and filed messages

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
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
        "mail_state",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "mail_aliases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("vendor_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["vendor_id"], ["vendors.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lookup"),
    )
    op.create_index("ix_mail_aliases_vendor_id", "mail_aliases", ["vendor_id"])
    op.create_table(
        "mail_reverse_aliases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("pair", sa.String(length=64), nullable=False),
        sa.Column("alias_id", sa.String(length=32), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["alias_id"], ["mail_aliases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lookup"),
        sa.UniqueConstraint("pair"),
    )
    op.create_index("ix_mail_reverse_aliases_alias_id", "mail_reverse_aliases", ["alias_id"])
    op.create_table(
        "mail_spool",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mail_spool_due", "mail_spool", ["state", "next_attempt_at", "id"])
    op.create_table(
        "mail_messages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("vendor_id", sa.String(length=32), nullable=True),
        sa.Column("alias_id", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["vendor_id"], ["vendors.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mail_messages_vendor_id", "mail_messages", ["vendor_id"])
    op.create_index("ix_mail_messages_alias_id", "mail_messages", ["alias_id"])
    op.create_index("ix_mail_messages_received_at", "mail_messages", ["received_at"])


def downgrade() -> None:
    op.drop_table("mail_messages")
    op.drop_table("mail_spool")
    op.drop_table("mail_reverse_aliases")
    op.drop_table("mail_aliases")
    op.drop_table("mail_state")
