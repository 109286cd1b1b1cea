"""A local demo incident service, so `make dev` works at once and tests run real adapter code.

It speaks both shapes the adapters know, over one in-memory store of synthetic incidents:
the generic REST API under /api and the PagerDuty REST API v2 shapes under /pagerduty, plus an
OAuth2 client-credentials token endpoint (/oauth/token) issuing short-lived bearer tokens that
every resource call must carry. Nothing here is real: the incidents are made up.

    with serve_demo_incidents("127.0.0.1", 9410, client_id="incident-helper") as demo:
        demo.url, demo.client_secret, demo.store.incidents   # while the block runs
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DEMO_CLIENT_SECRET = "demo-incidents-secret"  # noqa: S105  # pragma: allowlist secret (demo only)
TOKEN_TTL = 300
SERVICES = ["checkout", "payments-api", "warehouse-sync", "vpn", "email-relay"]
LEVELS = [["Primary on-call"], ["Secondary on-call"], ["Engineering manager", "Incident commander"]]
TITLES = [
    "Checkout latency above 2 s",
    "Card payments failing for 3% of users",
    "Warehouse sync lagging 40 minutes",
    "VPN gateway unreachable from Berlin office",
    "Outbound e-mail queue growing",
    "Disk 91% full on reporting database",
]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Store:
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tokens: dict[str, tuple[float, set[str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def seeded(cls) -> Store:
        store = cls()
        for i, title in enumerate(TITLES, start=1):
            incident_id = f"INC{1000 + i}"
            store.incidents[incident_id] = {
                "id": incident_id,
                "number": 1000 + i,
                "title": title,
                "status": "resolved" if i == len(TITLES) else "open",
                "severity": ["critical", "high", "low"][i % 3],
                "service": SERVICES[(i - 1) % len(SERVICES)],
                "created_at": (
                    dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=37 * i)
                ).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "escalation_level": 1,
            }
            store.notes[incident_id] = []
        return store


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


def build(client_id: str, client_secret: str = DEMO_CLIENT_SECRET, store: Store | None = None):
    """The ASGI app; `store` is exposed as app.state.store for tests."""
    store = store or Store.seeded()

    def authorised(request: Request, scope: str) -> JSONResponse | None:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        with store.lock:
            found = store.tokens.get(token)
        if not found or found[0] < time.time():
            return _error(401, "missing or expired bearer token")
        if scope not in found[1]:
            return _error(403, f"token lacks scope {scope}")
        return None

    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        cid, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if cid != client_id or not secrets.compare_digest(str(secret or ""), client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        granted = set(str(form.get("scope") or "incidents:read").split())
        value = secrets.token_urlsafe(24)
        with store.lock:
            store.tokens[value] = (time.time() + TOKEN_TTL, granted)
        return JSONResponse(
            {
                "access_token": value,
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL,
                "scope": " ".join(sorted(granted)),
            }
        )

    def incident_or_404(incident_id: str) -> dict[str, Any] | None:
        return store.incidents.get(incident_id)

    # -------------------------------------------------------------- generic REST (/api)
    async def g_list(request: Request) -> JSONResponse:
        if denied := authorised(request, "incidents:read"):
            return denied
        wanted = set(request.query_params.get("status", "open,acknowledged").split(","))
        items = [i for i in store.incidents.values() if i["status"] in wanted]
        return JSONResponse({"items": items})

    async def g_one(request: Request) -> JSONResponse:
        if denied := authorised(request, "incidents:read"):
            return denied
        found = incident_or_404(request.path_params["id"])
        return JSONResponse(found) if found else _error(404, "no such incident")

    async def g_action(request: Request) -> JSONResponse:
        if denied := authorised(request, "incidents:write"):
            return denied
        found = incident_or_404(request.path_params["id"])
        if not found:
            return _error(404, "no such incident")
        action = request.path_params["action"]
        if action not in ("acknowledge", "escalate"):
            return _error(404, f"no action {action}")
        body = await request.json()
        with store.lock:
            if action == "acknowledge":
                found["status"] = "acknowledged"
            elif action == "escalate":
                level = int(body.get("target", 0))
                if not 1 <= level <= len(LEVELS):
                    return _error(400, "unknown escalation target")
                if level <= found["escalation_level"]:
                    return _error(400, "escalation only goes up: choose a higher level")
                found["escalation_level"] = level
            found["updated_by"] = body.get("by")
        return JSONResponse(found)

    async def g_notes(request: Request) -> JSONResponse:
        incident_id = request.path_params["id"]
        scope = "incidents:read" if request.method == "GET" else "incidents:write"
        if denied := authorised(request, scope):
            return denied
        if not incident_or_404(incident_id):
            return _error(404, "no such incident")
        if request.method == "GET":
            return JSONResponse({"items": store.notes[incident_id]})
        body = await request.json()
        note = {"by": body["by"], "text": body["text"], "created_at": _now()}
        with store.lock:
            store.notes[incident_id].append(note)
        return JSONResponse(note, status_code=201)

    async def g_targets(request: Request) -> JSONResponse:
        if denied := authorised(request, "incidents:read"):
            return denied
        return JSONResponse(
            {
                "items": [
                    {"id": str(level), "name": f"Level {level}: " + ", ".join(names)}
                    for level, names in enumerate(LEVELS, start=1)
                ]
            }
        )

    # -------------------------------------------------------------- PagerDuty v2 (/pagerduty)
    def pd_incident(raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": raw["id"],
            "type": "incident",
            "incident_number": raw["number"],
            "title": raw["title"],
            "status": {"open": "triggered"}.get(raw["status"], raw["status"]),
            "urgency": "high" if raw["severity"] in ("critical", "high") else "low",
            "created_at": raw["created_at"],
            "service": {
                "id": raw["service"],
                "type": "service_reference",
                "summary": raw["service"],
            },
            "escalation_policy": {"id": "PDEMO1", "type": "escalation_policy_reference"},
            "escalation_level": raw["escalation_level"],
        }

    async def pd_list(request: Request) -> JSONResponse:
        if denied := authorised(request, "incidents:read"):
            return denied
        wanted = set(request.query_params.getlist("statuses[]") or ["triggered", "acknowledged"])
        items = [
            pd_incident(i) for i in store.incidents.values() if pd_incident(i)["status"] in wanted
        ]
        return JSONResponse(
            {"incidents": items, "limit": 100, "offset": 0, "more": False, "total": None}
        )

    async def pd_one(request: Request) -> JSONResponse:
        if denied := authorised(request, "incidents:read"):
            return denied
        found = incident_or_404(request.path_params["id"])
        if not found:
            return _error(404, "Incident Not Found")
        if request.method == "GET":
            return JSONResponse({"incident": pd_incident(found)})
        if denied := authorised(request, "incidents:write"):
            return denied
        if not request.headers.get("from"):
            return _error(400, 'You must specify a user\'s email address in the "From" header')
        change = (await request.json()).get("incident", {})
        with store.lock:
            if change.get("status") == "acknowledged":
                found["status"] = "acknowledged"
            if "escalation_level" in change:
                level = int(change["escalation_level"])
                if not 1 <= level <= len(LEVELS):
                    return _error(400, "Invalid escalation level")
                if level <= found["escalation_level"]:
                    return _error(400, "Escalation only goes up: choose a higher level")
                found["escalation_level"] = level
            found["updated_by"] = request.headers["from"]
        return JSONResponse({"incident": pd_incident(found)})

    async def pd_notes(request: Request) -> JSONResponse:
        incident_id = request.path_params["id"]
        scope = "incidents:read" if request.method == "GET" else "incidents:write"
        if denied := authorised(request, scope):
            return denied
        if not incident_or_404(incident_id):
            return _error(404, "Incident Not Found")
        if request.method == "GET":
            return JSONResponse(
                {
                    "notes": [
                        {
                            "id": f"N{i}",
                            "user": {"type": "user_reference", "summary": n["by"]},
                            "content": n["text"],
                            "created_at": n["created_at"],
                        }
                        for i, n in enumerate(store.notes[incident_id], start=1)
                    ]
                }
            )
        if not request.headers.get("from"):
            return _error(400, 'You must specify a user\'s email address in the "From" header')
        content = (await request.json())["note"]["content"]
        note = {"by": request.headers["from"], "text": content, "created_at": _now()}
        with store.lock:
            store.notes[incident_id].append(note)
        return JSONResponse(
            {
                "note": {
                    "id": f"N{len(store.notes[incident_id])}",
                    "user": {"type": "user_reference", "summary": note["by"]},
                    "content": content,
                    "created_at": note["created_at"],
                }
            },
            status_code=201,
        )

    async def pd_policy(request: Request) -> JSONResponse:
        if denied := authorised(request, "incidents:read"):
            return denied
        return JSONResponse(
            {
                "escalation_policy": {
                    "id": request.path_params["id"],
                    "type": "escalation_policy",
                    "escalation_rules": [
                        {
                            "escalation_delay_in_minutes": 30,
                            "targets": [
                                {"id": f"U{level}{j}", "type": "user_reference", "summary": name}
                                for j, name in enumerate(names)
                            ],
                        }
                        for level, names in enumerate(LEVELS, start=1)
                    ],
                }
            }
        )

    app = Starlette(
        routes=[
            Route("/oauth/token", token, methods=["POST"]),
            Route("/api/incidents", g_list),
            Route("/api/incidents/{id}", g_one),
            Route("/api/incidents/{id}/notes", g_notes, methods=["GET", "POST"]),
            Route("/api/incidents/{id}/{action:str}", g_action, methods=["POST"]),
            Route("/api/escalation-targets", g_targets),
            Route("/pagerduty/incidents", pd_list),
            Route("/pagerduty/incidents/{id}", pd_one, methods=["GET", "PUT"]),
            Route("/pagerduty/incidents/{id}/notes", pd_notes, methods=["GET", "POST"]),
            Route("/pagerduty/escalation_policies/{id}", pd_policy),
        ]
    )
    app.state.store = store
    return app


@dataclass(frozen=True)
class DemoIncidents:
    """A running demo incident service."""

    url: str  # http://host:port (the generic API is under /api, PagerDuty shapes /pagerduty)
    client_id: str
    client_secret: str  # what the app's connector must send to /oauth/token
    store: Store
    app: Any


@contextlib.contextmanager
def serve_demo_incidents(
    host: str = "127.0.0.1",
    port: int = 0,
    client_id: str = "incident-helper",
    client_secret: str = DEMO_CLIENT_SECRET,
) -> Iterator[DemoIncidents]:
    """Serve the demo incident service in a thread until the block ends (port 0: any free one).

    Raises SystemExit with what to do when the port is taken (e.g. by another `make dev`).
    """
    if port:
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                raise SystemExit(
                    f"Port {port} is in use: stop the other demo incident service "
                    "(another `make dev`?) and try again, or move it: change the port of the "
                    "connector's base_url and token_url in microapp.yaml."
                )
    store = Store.seeded()
    app = build(client_id, client_secret, store)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-incidents", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit(f"The demo incident service could not start on port {port}.")
        time.sleep(0.05)
    bound_port = port or server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield DemoIncidents(f"http://{shown}:{bound_port}", client_id, client_secret, store, app)
    finally:
        server.should_exit = True
        thread.join(timeout=5)
