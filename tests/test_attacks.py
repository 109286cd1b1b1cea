"""The attack and fault suite (issue 16): a generated approval app attacked the way a hostile
user or a broken environment would, in this process and cheaply.

The app is the approval kind's own code (kinds/approval/files/src, plain Python) with the
manifest the template renders for the default answers (rendered in-process), served by the
guardrails test kit against the local sign-in service. Each check records its class, the attack,
the expected and the observed result; `test_the_security_page_is_the_runs_table` compares
docs/security.md with the table of this run (`make security-page` rewrites it).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from guardrails.core.manifest import load_manifest
from guardrails.core.runtime import build_runtime
from guardrails.testing import (
    free_port,
    local_access_token,
    login,
    provider_id_token,
    serve,
    test_settings,
    with_free_local_ports,
)
from guardrails.testing.devserver import run_idp
from guardrails.testing.plugin import demo, idp  # noqa: F401 - fixtures
from itsdangerous import URLSafeTimedSerializer
from joserfc import jwt
from joserfc.jwk import RSAKey

from . import inprocess
from .conftest import DEFAULTS, REPO
from .kind_code import kind_code

SECURITY_PAGE = REPO / "docs/security.md"
HEADERS = (
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cache-control",
    "x-request-id",
)
# (class, attack) -> (expected, observed), in the order the checks ran
RESULTS: dict[tuple[str, str], tuple[str, str]] = {}


def check(cls: str, attack: str, expected: str, observed: str) -> None:
    """Record one check of the suite, then assert it."""
    RESULTS[(cls, attack)] = (expected, observed)
    assert observed == expected, f"{cls}: {attack}"


def answer(response: httpx.Response) -> str:
    """What a response says about the defences: status, page or JSON, Retry-After, whether
    every security header and the request id are there (and the request id shown)."""
    parts = [str(response.status_code)]
    kind = response.headers.get("content-type", "")
    if response.status_code >= 400:
        parts.append("page" if kind.startswith("text/html") else "JSON")
        if "retry-after" in response.headers:
            parts.append("Retry-After")
    missing = [h for h in HEADERS if h not in response.headers]
    parts.append("headers" if not missing else f"missing {', '.join(missing)}")
    if response.status_code >= 400 and response.headers.get("x-request-id", "?") in response.text:
        parts.append("request id shown")
    return ", ".join(parts)


# ---------------------------------------------------------------------- the app under attack
@pytest.fixture(scope="session")
def manifest(tmp_path_factory):
    """The manifest the template renders for the default answers (approval kind)."""
    path = tmp_path_factory.mktemp("approval") / "microapp.yaml"
    path.write_text(inprocess.render("templates/microapp.yaml.jinja", DEFAULTS))
    return with_free_local_ports(load_manifest(path))


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """The approval kind's app factory (its code as every new app gets it)."""
    with kind_code("approval", DEFAULTS, tmp_path_factory.mktemp("code")) as factory:
        yield factory


def start(build, folder: Path, issuer: str, manifest, **settings):
    folder.mkdir(parents=True, exist_ok=True)
    return serve(build, build_runtime(test_settings(folder, issuer, **settings), manifest))


@pytest.fixture(scope="module")
def live(build, idp, manifest, tmp_path_factory):  # noqa: F811
    with start(build, tmp_path_factory.mktemp("live"), idp, manifest) as app:
        yield app


class Browser(httpx.Client):
    """A browser: cookies, the session's CSRF token (`token`), forms posted with it."""

    token = ""

    def __enter__(self):  # already in use after sign-in; `with` only closes it at the end
        return self

    def form(self, path: str, **data) -> httpx.Response:
        return self.post(path, data={**data, "csrf_token": self.token})


def browser(app, email: str | None = None, **kwargs) -> Browser:
    client = Browser(
        base_url=app.url, follow_redirects=True, timeout=15, headers={"accept": "text/html"}
    )
    if email:
        page = login(client, app, email, **kwargs)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        client.token = found[1] if found else ""
    return client


def submit(client: Browser, title: str = "New laptop", details: str = "14 inch") -> int:
    page = client.form("/requests", title=title, details=details, action="submit")
    assert page.status_code == 200, page.text[:500]
    return int(page.url.path.rsplit("/", 1)[1])


def session_rows(app) -> int:
    path = app.runtime.settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM guardrails_session").fetchone()[0]


# ---------------------------------------------------------------------- identity (item 2)
def test_four_eyes_holds_across_a_bearer_token_without_e_mail(live, demo, manifest):  # noqa: F811
    approver = demo["approver"]
    with browser(live, approver) as client:
        rid = submit(client, "My own chair")
    token = local_access_token(
        live.runtime.sso_issuer, manifest.sso_audiences[0], approver, without=("email",)
    )
    refused = httpx.post(
        f"{live.url}/requests/{rid}/approve", headers={"authorization": f"Bearer {token}"}
    )
    events = [
        e for e in live.audit_events() if e["resource"] == {"type": "request", "id": str(rid)}
    ]
    ids = {e["actor"]["id"] for e in events}
    observed = f"{refused.status_code}, " + (
        "one actor id (issuer#sub)"
        if ids == {f"{live.runtime.sso_issuer}#{approver}"}
        else f"actor ids {sorted(ids)}"
    )
    check(
        "identity",
        "approve one's own request with a bearer token that has no e-mail claim",
        "403, one actor id (issuer#sub)",
        observed,
    )


# ---------------------------------------------------------------------- failing dependencies
def test_a_locked_sqlite_database_gives_503(build, idp, manifest, demo, tmp_path):  # noqa: F811
    folder = tmp_path / "locked"
    database = folder / "app.db"
    url = f"sqlite:///{database}?timeout=0.2"
    with start(build, folder, idp, manifest, database_url=url) as app:
        client = browser(app, demo["requester"])
        locker = sqlite3.connect(database, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            page = client.form("/requests", title="Locked", action="submit")  # waits 5 s
        finally:
            locker.execute("ROLLBACK")
            locker.close()
            client.close()
    expected = "503, page, Retry-After, headers, request id shown"
    check("dependency failure", "SQLite locked by another writer: a form", expected, answer(page))


def test_postgresql_down_gives_503_and_liveness_stays_up(build, idp, manifest, demo, tmp_path):  # noqa: F811
    pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")
    url = f"postgresql+psycopg://app:app@127.0.0.1:{free_port()}/app?connect_timeout=2"
    with start(build, tmp_path / "pg", idp, manifest, database_url=url) as app:
        livez = httpx.get(f"{app.url}/livez")
        readyz = httpx.get(f"{app.url}/readyz")
        healthz = httpx.get(f"{app.url}/healthz")
        with browser(app) as client:
            form = client.get("/login")  # anonymous sign-in start: no database needed
            page = client.post(str(form.url), data={"sub": demo["requester"]})
        token = local_access_token(idp, manifest.sso_audiences[0], demo["requester"])
        api = httpx.get(f"{app.url}/api/requests", headers={"authorization": f"Bearer {token}"})
    check("dependency failure", "PostgreSQL down: /livez", "200, headers", answer(livez))
    check(
        "dependency failure",
        "PostgreSQL down: /readyz",
        "503, JSON, Retry-After, headers",
        answer(readyz).replace(", request id shown", ""),
    )
    check(
        "dependency failure",
        "PostgreSQL down: /healthz",
        "503, JSON, Retry-After, headers",
        answer(healthz).replace(", request id shown", ""),
    )
    check(
        "dependency failure",
        "PostgreSQL down: completing a sign-in",
        "503, page, Retry-After, headers, request id shown",
        answer(page),
    )
    check(
        "dependency failure",
        "PostgreSQL down: an API call",
        "503, JSON, Retry-After, headers, request id shown",
        answer(api),
    )


def test_identity_provider_down(build, manifest, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with start(build, tmp_path / "idp-down", dead, manifest) as app:
        with browser(app) as client:
            page = client.get("/login")
        token = jwt.encode({"alg": "RS256", "kid": "k"}, {"sub": "x"}, RSAKey.generate_key(2048))
        api = httpx.get(f"{app.url}/api/requests", headers={"authorization": f"Bearer {token}"})
        audited = [e for e in app.audit_events() if e["action"] == "auth.login"]
    expected = "503, page, Retry-After, headers, request id shown"
    check("dependency failure", "identity provider down: GET /login", expected, answer(page))
    check(
        "dependency failure",
        "identity provider down: a bearer call needs its keys",
        expected.replace("page", "JSON"),
        answer(api),
    )
    check(
        "dependency failure",
        "identity provider down: audited",
        "failure events",
        "failure events" if audited and audited[-1]["result"] == "failure" else str(audited),
    )


def test_identity_provider_down_during_the_callback(build, manifest, demo, tmp_path):  # noqa: F811
    with run_idp(manifest) as issuer:
        served = start(build, tmp_path / "callback", issuer, manifest)
        app = served.__enter__()
        client = browser(app)
        form = client.get("/login")
        to_callback = client.post(
            str(form.url), data={"sub": demo["requester"]}, follow_redirects=False
        )
    try:  # the provider is gone now, with a code in flight
        page = client.get(to_callback.headers["location"])
    finally:
        client.close()
        served.__exit__(None, None, None)
    check(
        "dependency failure",
        "identity provider down during the callback",
        "503, page, Retry-After, headers, request id shown",
        answer(page),
    )


def test_a_nonce_mismatch_is_refused_and_audited(live, demo):  # noqa: F811
    """The ID token's nonce is not the one this browser's sign-in was started with (a replayed
    ID token): the pre-login state is re-signed with another nonce, as only the server could."""
    with browser(live) as client:
        first = client.get("/login", follow_redirects=False)
        name = next(c.name for c in client.cookies.jar if c.name.endswith("microapp-login"))
        signer = URLSafeTimedSerializer([live.runtime.session_key], salt="guardrails.login-state")
        state = signer.loads(client.cookies[name])
        client.cookies.set(name, signer.dumps({**state, "nonce": "not-the-one-sent"}))
        form = client.get(first.headers["location"])
        page = client.post(str(form.url), data={"sub": demo["requester"]})
    event = live.audit_events()[-1]
    check(
        "OIDC",
        "ID token with another nonce",
        "400, page, headers, request id shown; audited invalid_id_token",
        f"{answer(page)}; audited {event['metadata'].get('error')}"
        if event["action"] == "auth.login" and event["result"] == "failure"
        else answer(page),
    )


# ---------------------------------------------------------------------- anonymous callers
def test_anonymous_sign_in_starts_store_nothing(live):
    before = session_rows(live)
    with browser(live) as client:
        for _ in range(25):
            client.get("/login", follow_redirects=False)
    check(
        "anonymous load",
        "25 anonymous GET /login",
        "no session row stored",
        "no session row stored" if session_rows(live) == before else "session rows stored",
    )


@pytest.mark.parametrize(
    "target",
    ["/" + "a" * 5000, "//evil.example/", "/\\evil.example", "https://evil.example/"],
    ids=["5000 characters", "scheme-relative", "backslash", "absolute"],
)
def test_next_is_bounded_and_stays_on_the_app(live, demo, target):  # noqa: F811
    with browser(live) as client:
        landed = login(client, live, demo["requester"], next_path=target)
    shown = f"`{target}`" if len(target) < 40 else f"a path of {len(target)} characters"
    check(
        "anonymous load",
        f"sign in with next={shown}",
        "lands on /",
        "lands on /"
        if landed.url.path == "/" and landed.url.host == "localhost"
        else str(landed.url),
    )


def test_expired_sessions_are_purged_while_the_app_runs(live):
    from guardrails.core.housekeeping import Scheduler

    store = live.app.state.guardrails.session_store
    store.max_age = -1  # this row is born expired
    try:
        store.save("expired-session", {"user": {"sub": "x"}})
    finally:
        store.max_age = live.runtime.settings.session_max_age
    housekeeping = Scheduler(live.runtime)  # what the running app does every few minutes
    housekeeping.run_due(float("inf"))
    check(
        "anonymous load",
        "an expired session while the app runs",
        "purged",
        "purged" if store.load("expired-session") is None and session_rows(live) >= 0 else "kept",
    )


def test_anonymous_denials_cannot_fill_the_audit_store(live):
    before = len(live.audit_events())
    statuses = {
        httpx.post(f"{live.url}/requests", data={"title": "x"}).status_code for _ in range(40)
    }
    written = len(live.audit_events()) - before
    check(
        "anonymous load",
        "40 anonymous POSTs without a CSRF token",
        "all 403, at most 10 audited",
        f"all {statuses.pop()}, at most 10 audited"
        if len(statuses) == 1 and written <= 10
        else f"{sorted(statuses)}, {written} audited",
    )


# ---------------------------------------------------------------------- bearer tokens
class _Keys(BaseHTTPRequestHandler):
    """A stand-in provider that serves discovery and its keys and counts the key fetches."""

    issuer: ClassVar[str] = ""
    jwks: ClassVar[dict] = {}
    fetches: ClassVar[int] = 0

    def do_GET(self):
        if self.path.endswith("/jwks"):
            type(self).fetches += 1
            body = self.jwks
        else:
            body = {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
            }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_unknown_key_ids_do_not_hammer_the_provider(build, manifest, tmp_path, capfd):
    key = RSAKey.generate_key(2048, parameters={"kid": "real"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Keys)
    _Keys.issuer = f"http://127.0.0.1:{server.server_port}"
    _Keys.jwks = {"keys": [key.as_dict(private=False)]}
    _Keys.fetches = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with start(build, tmp_path / "jwks", _Keys.issuer, manifest) as app:
            now = int(time.time())
            claims = {"iss": _Keys.issuer, "sub": "x", "aud": manifest.sso_audiences[0]}
            claims |= {"iat": now, "exp": now + 60}
            statuses = set()
            for number in range(20):
                token = jwt.encode(
                    {"alg": "RS256", "kid": f"made-up-{number}", "typ": "at+jwt"}, claims, key
                )
                statuses.add(
                    httpx.get(
                        f"{app.url}/api/requests", headers={"authorization": f"Bearer {token}"}
                    ).status_code
                )
    finally:
        server.shutdown()
    check(
        "bearer",
        "20 tokens with made-up key ids",
        "all 401, keys fetched at most twice",
        f"all {statuses.pop()}, keys fetched at most twice"
        if len(statuses) == 1 and _Keys.fetches <= 2
        else f"{sorted(statuses)}, {_Keys.fetches} fetches",
    )
    logged = capfd.readouterr().err
    check(
        "bearer",
        "refused tokens leave a trace",
        "logged with the reason (sampled)",
        "logged with the reason (sampled)"
        if "reason=bearer_refused" in logged and logged.count("reason=bearer_refused") <= 6
        else "not logged",
    )


def _forged(issuer: str, audience: str, **header) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": "mallory", "aud": audience, "iat": now, "exp": now + 60}
    return jwt.encode(
        {"alg": "RS256", "typ": "at+jwt", **header}, claims, RSAKey.generate_key(2048)
    )


def _none_token(issuer: str, audience: str) -> str:
    import base64

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": issuer, "sub": "m", "aud": audience, "exp": now + 60}
    return f"{part({'alg': 'none', 'typ': 'at+jwt'})}.{part(claims)}."


@pytest.mark.parametrize(
    "kind",
    [
        "a token signed by another key",
        "a token with alg none",
        "an ID token",
        "an expired token",
        "a token for another audience",
    ],
)
def test_bearer_tokens_that_must_be_refused(live, demo, manifest, kind):  # noqa: F811
    issuer, audience = live.runtime.sso_issuer, manifest.sso_audiences[0]
    if kind == "a token signed by another key":
        token = _forged(issuer, audience, kid="forger")
    elif kind == "a token with alg none":
        token = _none_token(issuer, audience)
    elif kind == "an ID token":
        token = provider_id_token(issuer, manifest.sso_client_id, demo["admin"])
    elif kind == "an expired token":
        token = local_access_token(issuer, audience, demo["admin"], lifetime=-120)
    else:
        token = local_access_token(issuer, "urn:another-app", demo["admin"])
    refused = httpx.get(f"{live.url}/api/requests", headers={"authorization": f"Bearer {token}"})
    check(
        "bearer",
        kind,
        "401, JSON, headers",
        answer(refused).replace(", request id shown", ""),
    )


# ---------------------------------------------------------------------- sessions, CSRF, OIDC
def test_a_tampered_session_cookie_is_refused_and_logged(live, demo, capfd):  # noqa: F811
    with browser(live, demo["requester"]) as client:
        (cookie,) = [c for c in client.cookies.jar if c.name.endswith("microapp-session")]
        value = cookie.value[:-2] + ("AA" if not cookie.value.endswith("AA") else "BB")
        client.cookies.clear()
        client.cookies.set(cookie.name, value, domain=cookie.domain)
        page = client.get("/", follow_redirects=False)
    logged = "reason=session_cookie_tampered" in capfd.readouterr().err
    check(
        "session",
        "tampered session cookie",
        "303 to sign-in, logged",
        f"{page.status_code} to sign-in, {'logged' if logged else 'not logged'}"
        if page.headers.get("location", "").startswith("/login")
        else answer(page),
    )


def test_a_planted_session_is_not_signed_in_as_the_victim(live, demo):  # noqa: F811
    """Session fixation: the attacker plants their own valid session cookie in the victim's
    browser; the victim (an admin) signs in; the planted session must not become the admin's."""
    with browser(live, demo["requester"]) as attacker:
        (planted,) = [c for c in attacker.cookies.jar if c.name.endswith("microapp-session")]
    with browser(live) as victim:
        victim.cookies.set(planted.name, planted.value, domain=planted.domain)
        login(victim, live, demo["admin"])
    with browser(live) as replay:
        replay.cookies.set(planted.name, planted.value, domain=planted.domain)
        archive = replay.get("/?archived=1", follow_redirects=False)
    check(
        "session",
        "session fixation (a planted session cookie)",
        "not the victim's session",
        "not the victim's session" if archive.status_code != 200 else "the victim's session",
    )


def test_forged_state_is_refused(live):
    with browser(live) as client:
        client.get("/login", follow_redirects=False)
        page = client.get("/auth/callback", params={"code": "stolen", "state": "forged"})
    check(
        "OIDC",
        "callback with a forged state (code injection)",
        "400, page, headers, request id shown",
        answer(page),
    )


def test_csrf(live, demo):  # noqa: F811
    with browser(live, demo["requester"]) as client, browser(live, demo["approver"]) as other:
        missing = client.post("/requests", data={"title": "x", "action": "submit"})
        foreign = client.post(
            "/requests", data={"title": "x", "action": "submit", "csrf_token": other.token}
        )
    expected = "403, page, headers, request id shown"
    check("CSRF", "form without the token", expected, answer(missing))
    check("CSRF", "form with another session's token", expected, answer(foreign))


def test_xss_and_injection_are_inert(live, demo):  # noqa: F811
    script = "<script>alert(1)</script>"
    sql = "x'); DROP TABLE approval_request;--"
    with browser(live, demo["requester"]) as client:
        rid = submit(client, script, sql)
        page = client.get(f"/requests/{rid}").text
        listed = client.get("/")
        odd_ids = {
            client.get(f"/requests/{bad}").status_code
            for bad in ("1%20OR%201=1", str(2**64), "-1", "1e3")
        }
    check(
        "XSS",
        "a request titled `<script>alert(1)</script>`",
        "escaped",
        "escaped" if script not in page and "&lt;script&gt;" in page else "raw",
    )
    check(
        "injection",
        "SQL in a field",
        "stored as text",
        "stored as text" if listed.status_code == 200 and "DROP TABLE" in page else "broke",
    )
    check(
        "injection",
        "odd request ids (SQL, above 2^63, negative)",
        "404 or 422",
        "404 or 422" if odd_ids <= {404, 422} else str(sorted(odd_ids)),
    )


ROLE_MATRIX = [
    # role, what they try, expected status
    ("requester", "approve someone's request", 403),
    ("requester", "open the archive", 403),
    ("approver", "archive a request", 403),
    ("approver", "approve their own request", 403),
    ("admin", "open the archive", 200),
]


def test_authorization_matrix(live, demo):  # noqa: F811
    with browser(live, demo["approver"]) as approver:
        theirs = submit(approver, "Approver's own request")
    with browser(live, demo["requester"]) as requester:
        mine = submit(requester, "Requester's request")
    for role, attempt, expected in ROLE_MATRIX:
        with browser(live, demo[role]) as client:
            if attempt == "approve someone's request":
                status = client.form(f"/requests/{theirs}/approve").status_code
            elif attempt == "open the archive":
                page = client.get("/?archived=1")
                status = page.status_code if page.status_code != 200 else 200
            elif attempt == "archive a request":
                status = client.form(f"/requests/{mine}/archive").status_code
            else:
                status = client.form(f"/requests/{theirs}/approve").status_code
        check("authorization", f"{role}: {attempt}", str(expected), str(status))


def test_concurrent_decisions_have_one_winner(live, demo):  # noqa: F811
    with browser(live, demo["requester"]) as requester:
        rid = submit(requester, "Race")
    approver, admin = browser(live, demo["approver"]), browser(live, demo["admin"])
    results: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def decide(client, action):
        barrier.wait()
        results[action] = client.form(f"/requests/{rid}/{action}", comment="at once").status_code

    threads = [
        threading.Thread(target=decide, args=(approver, "approve")),
        threading.Thread(target=decide, args=(admin, "reject")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    approver.close()
    admin.close()
    wins = sorted(results.values())
    decided = [
        e
        for e in live.audit_events()
        if e["resource"] == {"type": "request", "id": str(rid)}
        and e["result"] == "success"
        and e["action"] in ("approval.approve", "approval.reject")
    ]
    check(
        "concurrency",
        "approve and reject at the same moment",
        "one winner, one success event",
        "one winner, one success event"
        if wins.count(200) == 1 and len(decided) == 1
        else f"statuses {wins}, {len(decided)} success events",
    )


def test_security_headers_on_every_kind_of_answer(live, demo):  # noqa: F811
    with browser(live, demo["requester"]) as client:
        answers = {
            "a page": client.get("/"),
            "a redirect": client.get("/login", follow_redirects=False),
            "404": client.get("/no-such-page"),
            "405": client.put("/requests"),
            "422": client.get("/requests/not-a-number"),
            "/livez": client.get("/livez"),
        }
    for what, response in answers.items():
        missing = [h for h in HEADERS if h not in response.headers]
        check(
            "headers",
            f"security headers and request id on {what}",
            "all present",
            "all present" if not missing else f"missing {', '.join(missing)}",
        )


# ---------------------------------------------------------------------- the generated page
def table() -> str:
    lines = [
        "# Security: attacks and faults",
        "",
        "Generated by the template's test run (`tests/test_attacks.py`, `make security-page`),",
        "not written by hand: each row is one check against the approval kind's app as every new",
        "app gets it, with the result observed in the run. A test fails when a defence is",
        "removed, and `test_the_security_page_is_the_runs_table` when this page is stale.",
        "",
        "| class | attack or fault | expected | observed |",
        "|---|---|---|---|",
    ]
    for (cls, attack), (expected, observed) in RESULTS.items():
        cells = [c.replace("|", "\\|") for c in (cls, attack, expected, observed)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def test_the_security_page_is_the_runs_table(request):
    """Last in the module: the committed docs/security.md is this run's table.

    Only a full, green run of the module says what the page must be; with
    MICROAPP_UPDATE_SECURITY_PAGE=1 (`make security-page`) the run writes it instead.
    """
    config = request.config
    if config.option.keyword or any("::" in str(a) for a in config.args):
        pytest.skip("a selection of the checks ran: the page needs them all")
    if request.session.testsfailed:
        pytest.skip("a check failed: its test says which")
    text = table()
    if os.environ.get("MICROAPP_UPDATE_SECURITY_PAGE") == "1":
        SECURITY_PAGE.write_text(text)
    assert SECURITY_PAGE.exists() and SECURITY_PAGE.read_text() == text, (
        "docs/security.md is not this run's table: run `make security-page` and commit it"
    )
