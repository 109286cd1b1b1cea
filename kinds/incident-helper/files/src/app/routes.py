"""Yours to edit. The on-call pages: open incidents, one incident, and three actions.

Every action (acknowledge, escalate, add a note) is rate-limited per user and audited with the
incident id through `audit.external`: the intent is recorded before the incident service is
called, then its outcome (success or failure), so no call ever goes unaudited. The incident
page shows who did what from that audit trail. The
incident API is reached only through the `incidents` connector (declared base URL, short-lived
OAuth2 token, traced), so this code never holds a credential.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import RedirectResponse, Response

from app.incidents import INCIDENT_ID, NotFound, ProviderError, Refused
from app.provider import provider
from guardrails import (
    ConnectorError,
    User,
    audit,
    audit_trail,
    limit_per_user,
    render,
    require_role,
)

router = APIRouter()

Responder = Annotated[User, Depends(require_role("responder", "admin"))]
IncidentId = Annotated[str, Path(pattern=INCIDENT_ID)]  # refused (422) before any call
ActionBudget = Annotated[User, Depends(limit_per_user("incident-actions", per_minute=20))]
# Pages call the incident API too: one person reloading cannot use up the connector's
# app-wide budget (rate_limit_per_minute in microapp.yaml) for the whole on-call team.
ViewBudget = Annotated[User, Depends(limit_per_user("incident-views", per_minute=30))]


def _failed(action: str, exc: Exception) -> HTTPException:
    return HTTPException(
        status_of(exc), f"The incident service did not {action} it: {exc}", headers=_retry(exc)
    )


def _retry(exc: Exception) -> dict[str, str] | None:
    seconds = getattr(exc, "retry_after", None)
    return {"Retry-After": str(seconds)} if seconds else None


def _unreadable(exc: Exception) -> HTTPException:
    status = status_of(exc)
    return HTTPException(
        status, f"The incident service could not be read: {exc}", headers=_retry(exc)
    )


def status_of(exc: Exception) -> int:
    """The page's status for a failed call: 404 when the incident API does not know the
    incident, 400 when it refused the request as invalid, the connector's own status (403,
    503...) when the guardrails refused or the service is down, else 502."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Refused):
        return 400
    if isinstance(exc, ConnectorError):
        return getattr(exc, "status", 502)
    return 502


@router.get("/")
def open_incidents(request: Request, user: Responder, _budget: ViewBudget) -> Response:
    try:
        incidents = provider().open_incidents()
    except (ProviderError, ConnectorError) as exc:
        raise _unreadable(exc) from None
    return render(request, "incidents.html", {"incidents": incidents})


@router.get("/incidents/{incident_id}")
def show_incident(
    request: Request, incident_id: IncidentId, user: Responder, _budget: ViewBudget
) -> Response:
    source = provider()
    try:
        incident = source.incident(incident_id)
        notes, targets = source.notes(incident_id), source.targets(incident_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except (ProviderError, ConnectorError) as exc:
        raise _unreadable(exc) from None
    return render(
        request,
        "incident.html",
        {
            "incident": incident,
            "notes": notes,
            "targets": targets,
            "history": [
                e for e in audit_trail(("incident", incident_id)) if e["result"] != "intent"
            ],
        },
    )


@router.post("/incidents/{incident_id}/acknowledge")
def acknowledge(incident_id: IncidentId, user: Responder, _budget: ActionBudget) -> Response:
    try:
        with audit.external("incident.acknowledge", resource=("incident", incident_id)) as out:
            out["outcome"] = provider().acknowledge(incident_id, by=user.label).status
    except (ProviderError, ConnectorError) as exc:
        raise _failed("acknowledge", exc) from None
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/escalate")
def escalate(
    incident_id: IncidentId,
    user: Responder,
    _budget: ActionBudget,
    target: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    if not target:
        raise HTTPException(400, "Choose where to escalate the incident to.")
    try:
        with audit.external(
            "incident.escalate", resource=("incident", incident_id), metadata={"target": target}
        ) as out:
            incident = provider().escalate(incident_id, target=target, by=user.label)
            out["outcome"] = f"level {incident.escalation_level}"
    except (ProviderError, ConnectorError) as exc:
        raise _failed("escalate", exc) from None
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/notes")
def add_note(
    incident_id: IncidentId,
    user: Responder,
    _budget: ActionBudget,
    text: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    if not text.strip():
        raise HTTPException(400, "Write the note first.")
    try:
        with audit.external(
            "incident.note",
            resource=("incident", incident_id),
            metadata={"length": len(text.strip())},
        ) as out:
            provider().add_note(incident_id, text.strip(), by=user.label)
            out["outcome"] = "added"
    except (ProviderError, ConnectorError) as exc:
        raise _failed("note", exc) from None
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)
