"""Yours to edit. The data model: one approval request per row."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import DateTime, Enum, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from guardrails import Model


class Status(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    ARCHIVED = "archived"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ApprovalRequest(Model):
    __tablename__ = "approval_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(120))
    details: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[Status] = mapped_column(
        Enum(Status, native_enum=False, length=16), default=Status.DRAFT
    )
    requester: Mapped[str] = mapped_column(String(254))
    requester_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, index=True
    )
    submitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decision: Mapped[str | None] = mapped_column(String(16))  # approved | rejected
    decided_by: Mapped[str | None] = mapped_column(String(254), index=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    decision_comment: Mapped[str | None] = mapped_column(Text)
    archived_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)

    # Indexes for what the pages filter and order by (newest first, by id): the "waiting for
    # your decision" list (status, then id), a requester's own list (requester, then id). Each
    # ends with the other filter column, so the counts beside the lists (the badge: submitted
    # and not mine; the total: not archived, mine or not a draft) are read from the index alone,
    # never from the rows. The single-column ones above serve the archive, the retention purge
    # and reports.
    __table_args__ = (
        Index("ix_approval_request_status_id_requester", "status", "id", "requester"),
        Index("ix_approval_request_requester_id_status", "requester", "id", "status"),
    )

    # Optimistic concurrency: every UPDATE of a request names the status it was read with
    # (UPDATE approval_request SET ... WHERE id = :id AND status = :read). When two people change
    # the same request at the same moment, the second UPDATE finds no row and SQLAlchemy raises
    # StaleDataError instead of overwriting the first decision (workflow.perform).
    __mapper_args__ = {"version_id_col": status, "version_id_generator": False}
