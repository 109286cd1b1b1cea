"""The audit intake: on PostgreSQL, events committed with their change wait here (a moment)
until they are chained (decision 0011). Unused on SQLite, which chains in the change's
transaction.

Revision ID: g0002
Revises: g0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "g0002"
down_revision = "g0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guardrails_audit_intake",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("body", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    waiting = op.get_bind().execute(sa.text("SELECT count(*) FROM guardrails_audit_intake"))
    if waiting.scalar():
        raise RuntimeError(
            "audit events are waiting to be chained: run the app (or its housekeeping) once so "
            "that they are, then downgrade"
        )
    op.drop_table("guardrails_audit_intake")
