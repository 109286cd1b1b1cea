"""Yours to edit. The approval requests table, as the first template version made it.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUS = ("DRAFT", "SUBMITTED", "APPROVED", "REJECTED", "ARCHIVED")


def upgrade() -> None:
    op.create_table(
        "approval_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*STATUS, name="status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("requester", sa.String(length=254), nullable=False),
        sa.Column("requester_name", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=254), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_comment", sa.Text(), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_approval_request_archived_at", "approval_request", ["archived_at"])
    op.create_index("ix_approval_request_requester", "approval_request", ["requester"])
    op.create_index("ix_approval_request_status", "approval_request", ["status"])


def downgrade() -> None:
    op.drop_table("approval_request")
