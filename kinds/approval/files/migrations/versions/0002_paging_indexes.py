"""Yours to edit. Indexes for the paged lists (template 1.1): every filter and order they use.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = "approval_request"
ADDED = {
    "ix_approval_request_created_at": ["created_at"],
    "ix_approval_request_decided_at": ["decided_at"],
    "ix_approval_request_decided_by": ["decided_by"],
    "ix_approval_request_requester_id": ["requester", "id"],  # "mine", newest first
    "ix_approval_request_status_id": ["status", "id"],  # "waiting", newest first
}
REPLACED = {  # single-column indexes the two-column ones above make redundant
    "ix_approval_request_requester": ["requester"],
    "ix_approval_request_status": ["status"],
}


def upgrade() -> None:
    for name in REPLACED:
        op.drop_index(name, table_name=TABLE)
    for name, columns in ADDED.items():
        op.create_index(name, TABLE, columns)


def downgrade() -> None:
    for name in ADDED:
        op.drop_index(name, table_name=TABLE)
    for name, columns in REPLACED.items():
        op.create_index(name, TABLE, columns)
