"""Guardrails' tables: server-side sessions, the audit chain, its head and delivery cursors.

Databases made before migrations (by create_all) already hold guardrail_session: it is kept.

Revision ID: g0001
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "g0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "guardrails_session" not in existing:
        op.create_table(
            "guardrails_session",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("data", sa.Text(), nullable=False),
            sa.Column("expires_at", sa.Float(), nullable=False),
        )
        op.create_index("ix_guardrails_session_expires_at", "guardrails_session", ["expires_at"])
    op.create_table(
        "guardrails_audit_event",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("timestamp", sa.String(32), nullable=False),
        sa.Column("action", sa.String(120), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=True),
        sa.Column("resource_id", sa.String(254), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_guardrails_audit_event_resource",
        "guardrails_audit_event",
        ["resource_type", "resource_id"],
    )
    op.create_table(
        "guardrails_audit_head",
        sa.Column("chain", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "guardrails_audit_cursor",
        sa.Column("sink", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("guardrails_audit_cursor")
    op.drop_table("guardrails_audit_head")
    op.drop_index("ix_guardrails_audit_event_resource", "guardrails_audit_event")
    op.drop_table("guardrails_audit_event")
