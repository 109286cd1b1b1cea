"""A local stand-in for HashiCorp Vault's HTTP API, for tests (Vault itself cannot run here).

It speaks the documented API for exactly what guardrails.secrets.vault uses -
`auth/token/lookup-self`,
`auth/token/renew-self`, `auth/approle/login`, `auth/kubernetes/login` and KV version 2 reads
(`<mount>/data/<path>`) - with Vault's field names, envelopes and status codes: 403
`permission denied` for a missing, expired or revoked token or a path outside the token's
policies, 400 `invalid role or secret ID`, 404 for a missing or deleted secret, 503 `Vault is
sealed`. Tokens live in a namespace (`X-Vault-Namespace`), have a TTL, a max TTL and may be
renewable. `down()` closes the listening socket (connection refused) and `up()` reopens it on
the same port with the same state; `seal()` answers 503. An injectable clock makes expiry
testable without sleeping; `tls=(cert, key)` serves https. Standard library only (the template
repository's own tests run it too).

    with VaultServer() as vault:
        vault.put("kv", "apps/demo/db", {"url": "sqlite://"})
        token = vault.create_token(policies=[vault.policy("read-apps", "kv/data/apps/*")])
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import io
import ipaddress
import json
import secrets
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeClock:
    """A clock tests move by hand; share one between VaultServer and the client."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject, issuer, public_key, signing_key, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test vault CA")])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    cert = build(name, ca_name, key.public_key(), ca_key, ca=False)
    paths = folder / "vault-ca.pem", folder / "vault-cert.pem", folder / "vault-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@contextlib.contextmanager
def log_text() -> Iterator[io.StringIO]:
    """What structlog writes inside the block, as text (to prove no secret value is logged).

    Enter it after the app is built: create_app() configures logging to standard error.
    """
    import structlog

    buffer = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buffer))
    try:
        yield buffer
    finally:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))


def _rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _duration(value: Any) -> int | None:
    """Vault durations: 3600, "3600", "1h", "15m", "30s"."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


@dataclass
class Token:
    id: str
    accessor: str
    namespace: str
    policies: list[str]
    ttl: int  # 0: never expires
    max_ttl: int  # 0: no cap beyond the issue time
    renewable: bool
    issued: float
    expires: float | None
    path: str = "auth/token/create"
    meta: dict[str, str] | None = None
    revoked: bool = False


@dataclass
class Version:
    data: dict[str, Any]
    created: float
    deleted: float | None = None


@dataclass
class Role:
    policies: list[str]
    token_ttl: int
    token_max_ttl: int
    secret_ids: set[str] = field(default_factory=set)
    name: str = ""
    service_accounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # jwt -> (sa, ns)
    bound_names: list[str] = field(default_factory=list)
    bound_namespaces: list[str] = field(default_factory=list)


class VaultServer:
    """Threaded HTTP server with Vault's API semantics for the calls guardrails makes."""

    def __init__(
        self,
        port: int = 0,
        clock: Callable[[], float] = time.time,
        tls: tuple[str, str] | None = None,
    ):
        self.clock = clock
        self.tls = tls
        self.port = port
        self.sealed = False
        self.calls: list[tuple[str, str, str]] = []  # (method, path, namespace) received
        self.tokens: dict[str, Token] = {}
        self.kv: dict[
            tuple[str, str], dict[str, list[Version]]
        ] = {}  # (ns, mount) -> path -> versions
        self.policies: dict[tuple[str, str], list[str]] = {}  # (ns, name) -> path globs (read)
        self.approles: dict[tuple[str, str], Role] = {}  # (ns, role_id) -> role
        self.k8s_roles: dict[tuple[str, str], Role] = {}  # (ns, role name) -> role
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()  # open keep-alive connections

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def up(self) -> VaultServer:
        """Start listening (again, on the same port and with the same state)."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_port
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="vault", daemon=True
        )
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening and drop open connections: clients get `connection refused`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._connections.clear()

    def seal(self) -> None:
        self.sealed = True

    def unseal(self) -> None:
        self.sealed = False

    def __enter__(self) -> VaultServer:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # ------------------------------------------------------------------ admin (test set-up)
    def put(self, mount: str, path: str, data: dict[str, Any], namespace: str = "") -> int:
        """Write a new version of a KV v2 secret; returns its version number."""
        with self._lock:
            versions = self.kv.setdefault((namespace, mount), {}).setdefault(path, [])
            versions.append(Version(dict(data), self.clock()))
            return len(versions)

    def delete_latest(self, mount: str, path: str, namespace: str = "") -> None:
        """Soft-delete the latest version (DELETE <mount>/data/<path>)."""
        with self._lock:
            self.kv[(namespace, mount)][path][-1].deleted = self.clock()

    def policy(self, name: str, *paths: str, namespace: str = "") -> str:
        """An ACL policy granting `read` on the given path globs; returns its name."""
        self.policies[(namespace, name)] = list(paths)
        return name

    def create_token(
        self,
        policies: list[str] | None = None,
        ttl: int = 3600,
        max_ttl: int = 0,
        renewable: bool = True,
        namespace: str = "",
        path: str = "auth/token/create",
        meta: dict[str, str] | None = None,
    ) -> str:
        now = self.clock()
        token = Token(
            id=f"hvs.{secrets.token_urlsafe(24)}",
            accessor=secrets.token_urlsafe(18),
            namespace=namespace,
            policies=sorted({"default", *(policies or [])}),
            ttl=ttl,
            max_ttl=max_ttl,
            renewable=renewable and ttl > 0,
            issued=now,
            expires=now + ttl if ttl else None,
            path=path,
            meta=meta,
        )
        with self._lock:
            self.tokens[token.id] = token
        return token.id

    def root_token(self, namespace: str = "") -> str:
        return self.create_token(policies=["root"], ttl=0, renewable=False, namespace=namespace)

    def revoke(self, token_id: str) -> None:
        with self._lock:
            self.tokens[token_id].revoked = True

    def add_approle(
        self,
        name: str,
        policies: list[str],
        token_ttl: int = 1200,
        token_max_ttl: int = 0,
        namespace: str = "",
    ) -> tuple[str, str]:
        """An AppRole with one secret id; returns (role_id, secret_id)."""
        role_id, secret_id = str(uuid.uuid4()), str(uuid.uuid4())
        role = Role(policies, token_ttl, token_max_ttl, {secret_id}, name=name)
        self.approles[(namespace, role_id)] = role
        return role_id, secret_id

    def add_kubernetes_role(
        self,
        name: str,
        policies: list[str],
        service_account: str,
        sa_namespace: str,
        token_ttl: int = 1200,
        token_max_ttl: int = 0,
        namespace: str = "",
    ) -> str:
        """A Kubernetes auth role bound to one service account; returns a JWT that reviews OK."""
        jwt = ".".join(secrets.token_urlsafe(24) for _ in range(3))
        role = Role(policies, token_ttl, token_max_ttl, name=name)
        role.service_accounts[jwt] = (service_account, sa_namespace)
        role.bound_names, role.bound_namespaces = [service_account], [sa_namespace]
        self.k8s_roles[(namespace, name)] = role
        return jwt

    def called(self, suffix: str) -> int:
        """How many requests hit a path ending in `suffix` (e.g. "renew-self")."""
        return sum(1 for _, path, _ in self.calls if path.endswith(suffix))

    # ------------------------------------------------------------------ request handling
    def _envelope(self, **parts: Any) -> dict[str, Any]:
        body = {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": None,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
            "mount_type": "",
        }
        body.update(parts)
        return body

    def _live_token(self, token_id: str | None, namespace: str) -> Token | None:
        token = self.tokens.get(token_id or "")
        if token is None or token.revoked or token.namespace != namespace:
            return None
        if token.expires is not None and self.clock() >= token.expires:
            return None
        return token

    def _auth_block(self, token: Token, **extra: Any) -> dict[str, Any]:
        return {
            "client_token": token.id,
            "accessor": token.accessor,
            "policies": token.policies,
            "token_policies": token.policies,
            "metadata": token.meta,
            "lease_duration": token.ttl,
            "renewable": token.renewable,
            "entity_id": "",
            "token_type": "service",
            "orphan": True,
            "mfa_requirement": None,
            "num_uses": 0,
            **extra,
        }

    def _issue(self, role: Role, namespace: str, path: str, meta: dict[str, str]) -> dict:
        token_id = self.create_token(
            policies=role.policies,
            ttl=role.token_ttl,
            max_ttl=role.token_max_ttl,
            namespace=namespace,
            path=path,
            meta=meta,
        )
        return self._envelope(auth=self._auth_block(self.tokens[token_id]))

    def handle(
        self, method: str, path: str, query: dict, headers: dict, body: dict
    ) -> tuple[int, dict | None]:
        namespace = (headers.get("x-vault-namespace") or "").strip("/")
        with self._lock:
            self.calls.append((method, path, namespace))
            if self.sealed:
                return 503, {"errors": ["Vault is sealed"]}
            route = path.removeprefix("/v1/")
            if method == "POST" and route == "auth/approle/login":
                return self._approle_login(namespace, body)
            if method == "POST" and route == "auth/kubernetes/login":
                return self._kubernetes_login(namespace, body)
            token = self._live_token(headers.get("x-vault-token"), namespace)
            if token is None:
                return 403, {"errors": ["permission denied"]}
            if method == "GET" and route == "auth/token/lookup-self":
                return 200, self._envelope(data=self._lookup(token))
            if method in ("POST", "PUT") and route == "auth/token/renew-self":
                return self._renew(token, body)
            mount, _, rest = route.partition("/")
            if method == "GET" and rest.startswith("data/"):
                return self._kv_read(token, namespace, mount, rest[5:], query)
            return 404, {"errors": [f'no handler for route "{route}". route entry not found.']}

    def _lookup(self, token: Token) -> dict[str, Any]:
        now = self.clock()
        return {
            "accessor": token.accessor,
            "creation_time": int(token.issued),
            "creation_ttl": token.ttl,
            "display_name": "token",
            "entity_id": "",
            "expire_time": _rfc3339(token.expires) if token.expires else None,
            "explicit_max_ttl": token.max_ttl,
            "id": token.id,
            "issue_time": _rfc3339(token.issued),
            "meta": token.meta,
            "num_uses": 0,
            "orphan": True,
            "path": token.path,
            "policies": token.policies,
            "renewable": token.renewable,
            "ttl": max(0, int(token.expires - now)) if token.expires else 0,
            "type": "service",
        }

    def _renew(self, token: Token, body: dict) -> tuple[int, dict]:
        if not token.renewable:
            return 400, {"errors": ["lease is not renewable"]}
        now = self.clock()
        wanted = _duration(body.get("increment")) or token.ttl
        warnings = None
        if token.max_ttl:
            left = int(token.issued + token.max_ttl - now)
            if wanted > left:
                warnings = [
                    f'TTL of "{wanted}s" exceeded the effective max_ttl of "{left}s"; '
                    "TTL value is capped accordingly"
                ]
                wanted = max(0, left)
        token.expires = now + wanted
        auth = self._auth_block(token, lease_duration=wanted)
        return 200, self._envelope(auth=auth, warnings=warnings)

    def _approle_login(self, namespace: str, body: dict) -> tuple[int, dict]:
        role_id, secret_id = body.get("role_id"), body.get("secret_id")
        if not role_id:
            return 400, {"errors": ["missing role_id"]}
        role = self.approles.get((namespace, role_id))
        if role is None or secret_id not in role.secret_ids:
            return 400, {"errors": ["invalid role or secret ID"]}
        return 200, self._issue(role, namespace, "auth/approle/login", {"role_name": role.name})

    def _kubernetes_login(self, namespace: str, body: dict) -> tuple[int, dict]:
        name, jwt = body.get("role"), body.get("jwt")
        if not jwt:
            return 400, {"errors": ["missing jwt"]}
        role = self.k8s_roles.get((namespace, name or ""))
        if role is None:
            return 400, {"errors": [f'invalid role name "{name}"']}
        account = role.service_accounts.get(jwt)
        if account is None:  # the TokenReview API did not accept the JWT
            return 403, {"errors": ["permission denied"]}
        if account[0] not in role.bound_names or account[1] not in role.bound_namespaces:
            return 403, {"errors": ["service account name not authorized"]}
        meta = {
            "role": role.name,
            "service_account_name": account[0],
            "service_account_namespace": account[1],
        }
        return 200, self._issue(role, namespace, f"auth/kubernetes/login/{role.name}", meta)

    def _allowed(self, token: Token, namespace: str, path: str) -> bool:
        if "root" in token.policies:
            return True
        globs = [g for p in token.policies for g in self.policies.get((namespace, p), [])]
        return any(fnmatch.fnmatchcase(path, g) for g in globs)

    def _kv_read(
        self, token: Token, namespace: str, mount: str, path: str, query: dict
    ) -> tuple[int, dict]:
        if not self._allowed(token, namespace, f"{mount}/data/{path}"):
            return 403, {"errors": ["permission denied"]}
        store = self.kv.get((namespace, mount))
        if store is None:
            return 404, {
                "errors": [f'no handler for route "{mount}/data/{path}". route entry not found.']
            }
        versions = store.get(path)
        if not versions:
            return 404, {"errors": []}
        wanted = int(query.get("version", ["0"])[0]) or len(versions)
        if wanted > len(versions):
            return 404, {"errors": []}
        version = versions[wanted - 1]
        metadata = {
            "created_time": _rfc3339(version.created),
            "custom_metadata": None,
            "deletion_time": _rfc3339(version.deleted) if version.deleted else "",
            "destroyed": False,
            "version": wanted,
        }
        if version.deleted:
            return 404, self._envelope(data={"data": None, "metadata": metadata})
        return 200, self._envelope(data={"data": dict(version.data), "metadata": metadata})


def _handler(vault: VaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with vault._lock:  # noqa: SLF001
                vault._connections.add(self.connection)  # noqa: SLF001

        def finish(self) -> None:
            with vault._lock:  # noqa: SLF001
                vault._connections.discard(self.connection)  # noqa: SLF001
            with contextlib.suppress(OSError):
                super().finish()

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                self._send(400, {"errors": ["failed to parse JSON input"]})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = vault.handle(
                self.command, parts.path, parse_qs(parts.query), headers, body
            )
            self._send(status, payload)

        def _send(self, status: int, payload: dict | None) -> None:
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve  # noqa: N815 (http.server's naming)

        def log_message(self, *args) -> None:
            pass

    return Handler
