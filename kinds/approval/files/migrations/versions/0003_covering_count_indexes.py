"""Yours to edit. Counts from the index alone (template 1.1): the paging indexes of 0002 gain
the other column the lists filter on, so the "waiting for your decision" badge and the list's
total never read the rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "approval_request"
ADDED = {
    # "waiting": status, newest first; the badge's `requester != me` from the index too
    "ix_approval_request_status_id_requester": ["status", "id", "requester"],
    # "mine": requester, newest first; the total's `status != archived` from the index too
    "ix_approval_request_requester_id_status": ["requester", "id", "status"],
}
REPLACED = {  # 0002's indexes: the ones above begin with the same columns
    "ix_approval_request_status_id": ["status", "id"],
    "ix_approval_request_requester_id": ["requester", "id"],
}


def upgrade() -> None:
    for name, columns in ADDED.items():
        op.create_index(name, TABLE, columns)
    for name in REPLACED:
        op.drop_index(name, table_name=TABLE)


def downgrade() -> None:
    for name, columns in REPLACED.items():
        op.create_index(name, TABLE, columns)
    for name in ADDED:
        op.drop_index(name, table_name=TABLE)
