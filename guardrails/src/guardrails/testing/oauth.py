"""A local OAuth2 token endpoint and a resource server, for testing the HTTP connector.

`POST /oauth/token` implements the client-credentials grant (RFC 6749 section 4.4): the client
authenticates with HTTP Basic (client_secret_basic) or form fields, gets a random bearer token
that expires after `token_lifetime` seconds, with `token_type`, `expires_in` and `scope`; wrong
credentials get 401 `invalid_client`, another grant 400 `unsupported_grant_type`.
`/api/...` is the protected API: it wants a live bearer token (401 with `WWW-Authenticate:
Bearer error="invalid_token"` otherwise), records every request's headers, and answers JSON.
Tests can script failures: `fail_next(503, 2)` answers 503 twice, `delay` slows answers down.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class OAuthServer:
    client_id: str = "incident-helper"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_lifetime: int = 300
    delay: float = 0.0
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expires (epoch)
    token_requests: int = 0
    seen: list[Seen] = field(default_factory=list)
    _failures: deque = field(default_factory=deque)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    def fail_next(self, status: int, times: int = 1) -> None:
        self._failures.extend([status] * times)

    def revoke_all(self) -> None:
        self.tokens.clear()

    def __enter__(self) -> OAuthServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ endpoints
    def token(self, headers: dict[str, str], form: dict[str, str]) -> tuple[int, dict]:
        self.token_requests += 1
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            decoded = base64.b64decode(auth[6:]).decode()
            client_id, _, secret = decoded.partition(":")
        if client_id != self.client_id or not secrets.compare_digest(
            secret or "", self.client_secret
        ):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        access = secrets.token_urlsafe(24)
        self.tokens[access] = time.time() + self.token_lifetime
        answer = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
        }
        if form.get("scope"):
            answer["scope"] = form["scope"]
        return 200, answer

    def api(self, seen: Seen) -> tuple[int, dict]:
        self.seen.append(seen)
        if self.delay:
            time.sleep(self.delay)
        if self._failures:
            return self._failures.popleft(), {"error": "scripted failure"}
        auth = seen.headers.get("authorization", "")
        expires = self.tokens.get(auth[7:]) if auth.lower().startswith("bearer ") else None
        if expires is None or time.time() >= expires:
            return 401, {"error": "invalid_token"}
        return 200, {"path": seen.path, "method": seen.method}


def _handler(server: OAuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = urlsplit(self.path).path
            if path == "/oauth/token" and self.command == "POST":
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                status, payload = server.token(headers, form)
            elif path.startswith("/api/") or path == "/api":
                status, payload = server.api(Seen(self.command, self.path, headers, body))
            else:
                status, payload = 404, {"error": "not found"}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401 and path != "/oauth/token":
                self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    return Handler
