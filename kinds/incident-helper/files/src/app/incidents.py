# Yours to edit: `copier update` never overwrites this file.
"""Incident providers: one interface, two adapters.

`GenericRestProvider` speaks the company incident service's REST shapes; `PagerDutyProvider`
speaks the PagerDuty REST API v2 (incidents list, status and escalation-level updates via
`PUT /incidents/{id}`, notes). Both call through the governed http connector, so every call is
traced, rate-limited, limited to the declared base URL and authenticated with a short-lived
OAuth2 client-credentials token; neither sees a credential.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

INCIDENT_ID = r"^[A-Za-z0-9_-]{1,64}$"  # what both APIs use; nothing that could change a URL


class ProviderError(RuntimeError):
    """The incident API refused or failed a call; the message is safe to show."""


class NotFound(ProviderError):
    """The incident API does not know this incident (its 404), or the id cannot be one."""


class Refused(ProviderError):
    """The request is not valid (the API's 400, 409 or 422, or checked before the call): the
    user's to change, not a failure of the incident service."""


@dataclass(frozen=True)
class Incident:
    id: str
    title: str
    status: str  # open | acknowledged | resolved
    severity: str
    service: str
    created_at: str
    escalation_level: int = 1
    number: int | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Note:
    author: str
    text: str
    created_at: str


@dataclass(frozen=True)
class Target:
    """Where an incident can be escalated to."""

    id: str
    name: str


class Client(Protocol):
    """What an adapter needs: the http connector (or any httpx-like client)."""

    def get(self, url: str = "", **kwargs: Any): ...
    def post(self, url: str = "", **kwargs: Any): ...
    def put(self, url: str = "", **kwargs: Any): ...


class Provider(Protocol):
    def open_incidents(self) -> list[Incident]: ...
    def incident(self, incident_id: str) -> Incident: ...
    def notes(self, incident_id: str) -> list[Note]: ...
    def targets(self, incident_id: str) -> list[Target]: ...
    def acknowledge(self, incident_id: str, by: str) -> Incident: ...
    def escalate(self, incident_id: str, target: str, by: str) -> Incident: ...
    def add_note(self, incident_id: str, text: str, by: str) -> Note: ...


def _json(response) -> dict[str, Any]:
    if response.status_code == 404:
        raise NotFound("The incident service does not know this incident.")
    if response.status_code in (400, 409, 422):
        raise Refused(f"The incident service refused the request ({response.status_code}).")
    if response.status_code >= 400:
        raise ProviderError(f"The incident service refused the request ({response.status_code}).")
    try:
        return response.json()
    except ValueError:
        raise ProviderError(
            "The incident service answered with something that is not JSON."
        ) from None


def _id(incident_id: str) -> str:
    """The id as a URL path segment, or a refusal: it must not change which URL is called."""
    if not re.fullmatch(INCIDENT_ID, incident_id):
        raise NotFound("This is not an incident id.")
    return incident_id


def _checked(cls):
    """Answers of an unexpected shape (a field missing, of the wrong type) become ProviderError."""
    for name in (
        "open_incidents",
        "incident",
        "notes",
        "targets",
        "acknowledge",
        "escalate",
        "add_note",
    ):
        method = getattr(cls, name)

        @functools.wraps(method)
        def wrapper(*args, _method=method, **kwargs):
            try:
                return _method(*args, **kwargs)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ProviderError(
                    f"The incident service answered in an unexpected shape ({type(exc).__name__})."
                ) from exc

        setattr(cls, name, wrapper)
    return cls


# ---------------------------------------------------------------------- generic REST
@_checked
class GenericRestProvider:
    """The company incident service: /incidents, /incidents/{id}/{acknowledge,escalate,notes}."""

    def __init__(self, client: Client):
        self.client = client

    @staticmethod
    def _incident(raw: dict[str, Any]) -> Incident:
        return Incident(
            id=str(raw["id"]),
            title=raw["title"],
            status=raw["status"],
            severity=raw.get("severity", "unknown"),
            service=raw.get("service", ""),
            created_at=raw.get("created_at", ""),
            escalation_level=int(raw.get("escalation_level", 1)),
            number=raw.get("number"),
            details=raw,
        )

    def open_incidents(self) -> list[Incident]:
        body = _json(self.client.get("/incidents", params={"status": "open,acknowledged"}))
        return [self._incident(raw) for raw in body["items"]]

    def incident(self, incident_id: str) -> Incident:
        return self._incident(_json(self.client.get(f"/incidents/{_id(incident_id)}")))

    def notes(self, incident_id: str) -> list[Note]:
        body = _json(self.client.get(f"/incidents/{_id(incident_id)}/notes"))
        return [Note(n["by"], n["text"], n["created_at"]) for n in body["items"]]

    def targets(self, incident_id: str) -> list[Target]:
        body = _json(self.client.get("/escalation-targets"))
        return [Target(str(t["id"]), t["name"]) for t in body["items"]]

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        return self._incident(
            _json(self.client.post(f"/incidents/{_id(incident_id)}/acknowledge", json={"by": by}))
        )

    def escalate(self, incident_id: str, target: str, by: str) -> Incident:
        return self._incident(
            _json(
                self.client.post(
                    f"/incidents/{_id(incident_id)}/escalate", json={"by": by, "target": target}
                )
            )
        )

    def add_note(self, incident_id: str, text: str, by: str) -> Note:
        n = _json(
            self.client.post(f"/incidents/{_id(incident_id)}/notes", json={"by": by, "text": text})
        )
        return Note(n["by"], n["text"], n["created_at"])


# ---------------------------------------------------------------------- PagerDuty REST API v2
PD_STATUS = {"triggered": "open", "acknowledged": "acknowledged", "resolved": "resolved"}


@_checked
class PagerDutyProvider:
    """PagerDuty REST API v2 shapes. Writes carry the `From` header PagerDuty requires."""

    headers = {"Accept": "application/vnd.pagerduty+json;version=2"}

    def __init__(self, client: Client):
        self.client = client

    @staticmethod
    def _incident(raw: dict[str, Any]) -> Incident:
        return Incident(
            id=raw["id"],
            title=raw["title"],
            status=PD_STATUS[raw["status"]],
            severity=raw.get("urgency", "high"),
            service=(raw.get("service") or {}).get("summary", ""),
            created_at=raw.get("created_at", ""),
            escalation_level=int(raw.get("escalation_level") or 1),
            number=raw.get("incident_number"),
            details=raw,
        )

    def _write_headers(self, by: str) -> dict[str, str]:
        return {**self.headers, "From": by}

    def open_incidents(self) -> list[Incident]:
        params = [("statuses[]", "triggered"), ("statuses[]", "acknowledged"), ("limit", "100")]
        body = _json(self.client.get("/incidents", params=params, headers=self.headers))
        return [self._incident(raw) for raw in body["incidents"]]

    def incident(self, incident_id: str) -> Incident:
        body = _json(self.client.get(f"/incidents/{_id(incident_id)}", headers=self.headers))
        return self._incident(body["incident"])

    def notes(self, incident_id: str) -> list[Note]:
        body = _json(self.client.get(f"/incidents/{_id(incident_id)}/notes", headers=self.headers))
        return [
            Note((n.get("user") or {}).get("summary", "unknown"), n["content"], n["created_at"])
            for n in body["notes"]
        ]

    def targets(self, incident_id: str) -> list[Target]:
        incident = self.incident(incident_id)
        policy_id = incident.details["escalation_policy"]["id"]
        body = _json(self.client.get(f"/escalation_policies/{policy_id}", headers=self.headers))
        rules = body["escalation_policy"]["escalation_rules"]
        return [
            Target(
                str(level),
                f"Level {level}: " + ", ".join(t.get("summary", t["id"]) for t in rule["targets"]),
            )
            for level, rule in enumerate(rules, start=1)
        ]

    def _update(self, incident_id: str, changes: dict[str, Any], by: str) -> Incident:
        body = {"incident": {"type": "incident_reference", **changes}}
        return self._incident(
            _json(
                self.client.put(
                    f"/incidents/{_id(incident_id)}", json=body, headers=self._write_headers(by)
                )
            )["incident"]
        )

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        return self._update(incident_id, {"status": "acknowledged"}, by)

    def escalate(self, incident_id: str, target: str, by: str) -> Incident:
        if not re.fullmatch(r"[0-9]{1,3}", target):
            raise Refused("Choose an escalation level.")
        return self._update(incident_id, {"escalation_level": int(target)}, by)

    def add_note(self, incident_id: str, text: str, by: str) -> Note:
        body = _json(
            self.client.post(
                f"/incidents/{_id(incident_id)}/notes",
                json={"note": {"content": text}},
                headers=self._write_headers(by),
            )
        )
        n = body["note"]
        return Note((n.get("user") or {}).get("summary", by), n["content"], n["created_at"])


ADAPTERS = {"generic": GenericRestProvider, "pagerduty": PagerDutyProvider}
