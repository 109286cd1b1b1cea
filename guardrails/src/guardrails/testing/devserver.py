"""`make dev`: the local sign-in service (oidc-provider-mock) plus the app, on this machine.

Demo users come from microapp.yaml: one per role, e.g. approver@example.com holding the first
group of `sso.roles.approver`. The provider requires a nonce and accepts any client secret
(the app uses a fixed local one); it does not check the PKCE verifier, which is why the app's
tests assert what the app sends. The app runs with auto-reload so edits to src/ show at once.

A kind that needs more on a laptop (demo data, a demo API) says so in the owner's
`app/dev.py`: a context manager `services(var_dir, manifest)` that starts them and yields the
environment variables the app needs (e.g. the demo database URL); `make dev` runs it first.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import flask
import jinja2
import werkzeug.serving
from joserfc.jwk import RSAKey
from oidc_provider_mock import User as IdpUser
from oidc_provider_mock import app as idp_app

from guardrails.core.manifest import Manifest


@dataclass(frozen=True)
class DemoUser:
    email: str
    name: str
    groups: tuple[str, ...]
    role: str
    label: str  # the role as people see it (manifest sso.role_labels)

    def claims(self) -> IdpUser:
        return IdpUser(
            sub=self.email,
            claims={"email": self.email, "name": self.name, "groups": list(self.groups)},
        )


def demo_users(manifest: Manifest) -> list[DemoUser]:
    """One demo user per role declared in the manifest, holding that role's first group."""
    return [
        DemoUser(
            email=f"{role}@example.com",
            name=f"Demo {manifest.role_label(role)}",
            groups=(groups[0],),
            role=role,
            label=manifest.role_label(role),
        )
        for role, groups in manifest.roles.items()
    ]


# The provider's signing keys as joserfc keys, by modulus: importing a private RSA key from its
# JWK runs cryptography's check of the key, about 50 ms, where signing with it takes 1 ms.
_SIGNING_KEYS: dict[str, RSAKey] = {}


def signing_key(jwk: dict) -> RSAKey:
    """The private RSA key of JWK `jwk`, imported once per process."""
    key = _SIGNING_KEYS.get(jwk["n"])
    if key is None:
        if len(_SIGNING_KEYS) >= 64:  # a key per provider started: a long test run starts many
            _SIGNING_KEYS.clear()
        key = _SIGNING_KEYS[jwk["n"]] = RSAKey.import_key(jwk)
    return key


def _sign_with_keys_imported_once() -> None:
    """oidc-provider-mock 0.3.4 (the newest the package index has) gives authlib its signing
    key as a JWK dict, which authlib imports again for each ID token it signs: 50 ms of each
    sign-in, a fifth of an app's test suite. Its ID tokens are signed with the key imported
    once instead (authlib takes a joserfc key as it is). A version whose code differs is left
    alone: sign-ins are then only slower."""
    try:
        import oidc_provider_mock._app as idp_internals
    except ImportError:  # a version laid out differently
        return
    code = getattr(idp_internals, "OpenIDCode", None)
    plain = getattr(code, "get_jwt_config", None)
    if plain is None or getattr(plain, "imports_once", False):
        return

    def get_jwt_config(self, grant, client=None):
        config = plain(self, grant, client)
        key = config.get("key")
        if isinstance(key, dict) and key.get("kty") == "RSA" and "d" in key and "n" in key:
            config["key"] = signing_key(key)
        return config

    get_jwt_config.imports_once = True
    code.get_jwt_config = get_jwt_config


_sign_with_keys_imported_once()

PAGES = Path(__file__).with_name("idp_pages")
STATIC = Path(__file__).parent.parent / "static"


def _dress(wsgi: flask.Flask, manifest: Manifest) -> None:
    """The provider's pages in the app's style, from this machine (its own load a CDN)."""
    wsgi.jinja_loader = jinja2.FileSystemLoader(str(PAGES))  # before the blueprint's pages
    wsgi.jinja_env.globals.update(
        app_name=manifest.name, demo_users={u.email: u for u in demo_users(manifest)}
    )
    for name in ("app.css", "favicon.svg"):
        wsgi.add_url_rule(
            f"/_local/{name}",
            endpoint=f"local-{name}",
            view_func=lambda name=name: flask.send_from_directory(STATIC, name),
        )


# issuer -> the running local provider's storage (signing key, users), for test tokens
_RUNNING: dict[str, object] = {}


def _storage(wsgi):
    with wsgi.test_request_context():
        wsgi.preprocess_request()  # the provider binds its storage in a before_request hook
        return flask.g.oidc_provider_mock_storage


@contextlib.contextmanager
def run_idp(manifest: Manifest, port: int = 0, host: str = "localhost"):
    """Serve the local OIDC provider in a thread; yields its issuer URL."""
    wsgi = idp_app(require_nonce=True, user_claims=[u.claims() for u in demo_users(manifest)])
    _dress(wsgi, manifest)
    server = werkzeug.serving.make_server(host, port, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dev-idp", daemon=True)
    thread.start()
    issuer = f"http://{host}:{server.server_port}"
    _RUNNING[issuer] = _storage(wsgi)
    try:
        yield issuer
    finally:
        _RUNNING.pop(issuer, None)
        server.shutdown()
        thread.join(timeout=5)


def local_access_token(
    issuer: str,
    audience: str | list[str],
    email: str,
    lifetime: int = 300,
    without: tuple[str, ...] = (),
) -> str:
    """An RFC 9068 JWT access token for `email`, signed with the key of the local provider
    that runs at `issuer` (started by run_idp in this process), for API tests.

    The local provider issues opaque access tokens only; companies' providers issue JWT access
    tokens for an API audience (Keycloak, Entra ID, Okta, Auth0), which is what this makes:
    `typ: at+jwt`, the user's claims, the provider's signing key and key id. `without` names
    claims to leave out, e.g. `("email",)` as in Entra ID access tokens.
    """
    import time

    from joserfc import jwt

    storage = _RUNNING.get(issuer)
    if storage is None:
        raise LookupError(f"no local provider of this process runs at {issuer}")
    key = signing_key(storage.jwk.as_dict(is_private=True))
    user = storage.get_user(email)
    now = int(time.time())
    claims = {
        **(dict(user.claims) if user else {}),
        "iss": issuer,
        "sub": email,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "client_id": "api-client",
        "jti": secrets.token_urlsafe(12),
    }
    for name in without:
        claims.pop(name, None)
    header = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key)


def dev_session_key(var_dir: Path = Path("var")) -> str:
    """A session key kept in var/ (git-ignored) so sign-ins survive auto-reloads."""
    path = var_dir / "dev-session-key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


@contextlib.contextmanager
def app_services(var_dir: Path, manifest: Manifest):
    """Run the owner's `app.dev.services(var_dir, manifest)` if the app has one; yields its
    variables."""
    try:
        dev = importlib.import_module("app.dev")
    except ModuleNotFoundError as exc:
        if exc.name not in ("app.dev", "app"):
            raise  # app/dev.py exists but imports something missing: say so
        yield {}
        return
    with dev.services(var_dir, manifest) as env:
        yield dict(env)


@contextlib.contextmanager
def dev_stack(manifest: Manifest, port: int, idp_port: int):
    """The local sign-in service and the app's own demo services (app/dev.py), with the
    environment the app reads set for them; yields the issuer URL. `make dev` and
    `make a11y` run the app inside it."""
    if manifest.stage == "production":
        raise SystemExit("make dev is for laptops: microapp.yaml says stage: production.")
    with contextlib.ExitStack() as stack:
        try:
            issuer = stack.enter_context(run_idp(manifest, port=idp_port))
        except OSError as exc:
            raise SystemExit(
                f"Cannot start the local sign-in service on port {idp_port}: {exc}. "
                "Stop whatever uses it, or run: make dev IDP_PORT=9401"
            ) from None
        for name, value in stack.enter_context(app_services(Path("var"), manifest)).items():
            os.environ.setdefault(name, value)
        os.environ["MICROAPP_SSO_ISSUER"] = issuer
        os.environ.setdefault("MICROAPP_BASE_URL", f"http://localhost:{port}")
        os.environ.setdefault("MICROAPP_SESSION_KEY", dev_session_key())
        yield issuer


def banner(manifest: Manifest, port: int, issuer: str) -> str:
    """What `make dev` prints first: where the app and the sign-in service are, who to be."""
    bar = "-" * 72
    lines = [
        bar,
        f"  {manifest.name}: http://localhost:{port}   (Ctrl-C stops everything)",
        f"  Local sign-in service: {issuer}  - pick a demo user there:",
        *(
            f"    {user.email:<28} {user.label:<24} group {user.groups[0]}"
            for user in demo_users(manifest)
        ),
        bar,
    ]
    return "\n".join(lines)


def run_dev(manifest: Manifest, port: int, idp_port: int, reload: bool) -> None:
    import uvicorn

    with dev_stack(manifest, port, idp_port) as issuer:
        print(banner(manifest, port, issuer), flush=True)
        uvicorn.run(
            "app.main:build",
            factory=True,
            host="127.0.0.1",
            port=port,
            reload=reload,
            reload_dirs=["src"] if reload else None,
            log_level="info",
        )
