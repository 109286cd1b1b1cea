"""An OpenID Certified provider for tests: npm `oidc-provider` (9.x) run by Node.

The template repository's `make setup` installs the package into `.tools/oidc`; elsewhere set
MICROAPP_OIDC_PROVIDER to its folder (the one holding node_modules/). `unavailable()` says why
it cannot run (no node, package missing), for `pytest.skip`.

    with serve_oidc_provider(clients=[client(app_url, "my-app")], users=USERS) as op:
        ...  # op.issuer, op.login(client, app, "alice@example.com")

See oidc_provider.mjs for how the provider is set up (PKCE required, spec-conformant ID tokens
with claims only at userinfo, groups only for the groups scope, JWT access tokens through
resource indicators, RP-initiated logout, each client's authentication method enforced).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx

from guardrails.testing import tls

SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def _package_dir() -> Path | None:
    """The folder whose node_modules/ holds oidc-provider."""
    candidates = []
    if os.environ.get("MICROAPP_OIDC_PROVIDER"):
        candidates.append(Path(os.environ["MICROAPP_OIDC_PROVIDER"]))
    for base in (Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents):
        candidates.append(base / ".tools" / "oidc")
    for folder in candidates:
        if (folder / "node_modules" / "oidc-provider" / "package.json").exists():
            return folder
    return None


def unavailable() -> str | None:
    """Why the provider cannot run here (None when it can)."""
    if shutil.which("node") is None:
        return "node is not installed (the OpenID Certified provider oidc-provider runs on it)"
    if _package_dir() is None:
        return (
            "npm package oidc-provider not found: run `make setup` in the template repository "
            "(installs it into .tools/oidc) or set MICROAPP_OIDC_PROVIDER to its folder"
        )
    return None


def client(
    app_url: str,
    client_id: str,
    secret: str = "test-client-secret",  # noqa: S107 - a test provider's client
    auth_method: str = "client_secret_basic",
    jwks: dict | None = None,
    **metadata,
) -> dict:
    """A client registration for the app served at `app_url` (`jwks`: the public keys of a
    private_key_jwt client; `metadata`: more client metadata, such as
    id_token_signed_response_alg="ES256")."""
    extra = {"jwks": jwks} if jwks else {}
    return {
        **extra,
        **metadata,
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [f"{app_url}/auth/callback"],
        "post_logout_redirect_uris": [f"{app_url}/signed-out"],
        # the provider posts logout tokens here (to 127.0.0.1: Node may try ::1 for localhost)
        "backchannel_logout_uri": f"{app_url.replace('//localhost:', '//127.0.0.1:')}"
        "/auth/backchannel-logout",
        "backchannel_logout_session_required": True,
        "token_endpoint_auth_method": auth_method,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }


@dataclasses.dataclass
class OIDCProvider:
    issuer: str
    process: subprocess.Popen
    errors: typing.IO[str] | None = None

    def log(self) -> str:
        """What the provider wrote to stderr so far (warnings, failed back-channel calls)."""
        if self.errors is None:
            return ""
        self.errors.flush()
        self.errors.seek(0)
        return self.errors.read()

    def metadata(self) -> dict:
        discovery = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        return httpx.get(discovery, timeout=10, verify=tls()).json()

    def complete_interactions(self, http: httpx.Client, page: httpx.Response, login: str):
        """Fill in the provider's own pages (login form, consent) until it sends the browser
        on; returns the last response."""
        for _ in range(5):
            if not str(page.url).startswith(self.issuer.rstrip("/")):
                return page
            found = FORM.search(page.text)
            if found is None:
                return page
            action, body = unescape(found[1]), found[2]
            data = {name: unescape(value) for name, value in HIDDEN.findall(body)}
            if data.get("prompt") == "login":
                data.update({"login": login, "password": "any"})
            page = http.post(str(page.url.join(action)), data=data)
        return page

    def login(self, http: httpx.Client, app_url: str, login: str, next_path: str = "/"):
        """Sign in to the app through the provider's login form; returns the app's page."""
        first = http.get(f"{app_url}/login", params={"next": next_path})
        return self.complete_interactions(http, first, login)

    def end_session(self, http: httpx.Client) -> httpx.Response:
        """Sign out at the provider itself (not through an app): its logout page, confirmed."""
        page = http.get(self.metadata()["end_session_endpoint"])
        return self.confirm_logout(http, page)

    def confirm_logout(self, http: httpx.Client, page: httpx.Response) -> httpx.Response:
        """Answer "Yes, sign me out" on the provider's logout page."""
        found = FORM.search(page.text)
        if found is None:
            raise AssertionError(f"no logout form at {page.url}: {page.text[:300]}")
        data = {name: unescape(value) for name, value in HIDDEN.findall(found[2])}
        return http.post(str(page.url.join(unescape(found[1]))), data={**data, "logout": "yes"})

    def tokens(
        self,
        client_id: str,
        secret: str,
        login: str,
        redirect_uri: str,
        scope: str = "openid email profile",
        resource: str | None = None,
        auth_method: str = "client_secret_basic",
    ) -> dict:
        """The token response of a code flow run without an app (PKCE, nonce), e.g. for API
        tests. With `resource`, the access token is a JWT for that audience."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        if resource:
            params["resource"] = resource
        meta = self.metadata()
        with httpx.Client(timeout=10, follow_redirects=False, verify=tls()) as http:
            page = http.get(meta["authorization_endpoint"], params=params)
            for _ in range(10):  # follow the provider's own redirects and pages only
                location = page.headers.get("location")
                if location and location.startswith(redirect_uri):
                    break
                if location:
                    page = http.get(str(page.url.join(location)))
                    continue
                page = self.complete_interactions(http, page, login)
            answer = httpx.URL(page.headers.get("location", str(page.url))).params
            if "code" not in answer:
                raise RuntimeError(
                    f"the provider sent no code: {answer.get('error')} "
                    f"{answer.get('error_description')}"
                )
            code = answer["code"]
            data = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            }
            if resource:
                data["resource"] = resource
            if auth_method == "client_secret_post":
                data.update({"client_id": client_id, "client_secret": secret})
                answer = http.post(meta["token_endpoint"], data=data)
            else:
                answer = http.post(meta["token_endpoint"], data=data, auth=(client_id, secret))
            answer.raise_for_status()
            return answer.json()


STARTS = 3  # attempts before giving up: a start that stalls is retried, not failed
READY_WAIT = 45  # seconds for one attempt's READY line


def _start_node(
    env: dict[str, str], script: Path = SCRIPT
) -> tuple[subprocess.Popen, typing.IO[str]]:
    """Start the provider and wait for its READY line; a start that says nothing in READY_WAIT
    seconds (seen once on a busy CI machine) is diagnosed (node's own report of where it
    stands, asked for with SIGUSR2), killed and tried again, STARTS times at most. A provider
    that exits at once (a bad configuration, a port taken) fails at once, with its error."""
    stalls = []
    for _attempt in range(STARTS):
        errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 - the caller closes it
        reports = tempfile.mkdtemp(prefix="oidc-provider-report-")
        process = subprocess.Popen(  # noqa: S603 - our script, our configuration
            [
                shutil.which("node") or "node",
                "--report-on-signal",
                "--report-signal=SIGUSR2",
                f"--report-directory={reports}",
                str(script),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        ready, _, _ = select.select([process.stdout], [], [], READY_WAIT)
        line = process.stdout.readline() if ready else ""
        if line.startswith("READY"):
            shutil.rmtree(reports, ignore_errors=True)
            if stalls:
                sys.stderr.write(f"oidc-provider started after {len(stalls)} stalled start(s):\n")
                sys.stderr.write("\n".join(stalls) + "\n")
            return process, errors
        stalled = not ready and process.poll() is None
        if stalled:
            process.send_signal(signal.SIGUSR2)
            written = time.monotonic() + 3
            while time.monotonic() < written and not any(Path(reports).glob("*.json")):
                time.sleep(0.05)
            time.sleep(0.1)  # the report is written whole before the next one is looked at
        process.kill()
        process.wait()
        process.stdout.close()
        errors.seek(0)
        said = errors.read()[-2000:]
        errors.close()
        if not stalled:
            shutil.rmtree(reports, ignore_errors=True)
            raise RuntimeError(f"oidc-provider did not start: {line}{said}")
        stalls.append(
            f"no READY line within {READY_WAIT} s; stderr: {said.strip()}; "
            f"node's report: {_node_report(reports)}"
        )
        shutil.rmtree(reports, ignore_errors=True)
    raise RuntimeError("oidc-provider did not start:\n" + "\n".join(stalls))


def _node_report(folder: str) -> str:
    """The JavaScript stack and active handles from node's diagnostic report, if it wrote one."""
    for path in Path(folder).glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            report = json.loads(path.read_text())
            stack = report.get("javascriptStack", {})
            handles = [h.get("type") for h in report.get("libuv", []) if h.get("is_active")]
            return json.dumps(
                {
                    "message": stack.get("message"),
                    "stack": stack.get("stack", [])[:12],
                    "active_handles": handles,
                }
            )
    return "(none written)"


@contextlib.contextmanager
def serve_oidc_provider(
    *,
    port: int,
    clients: list[dict],
    users: dict[str, dict],
    path: str = "",
    resources: dict[str, dict] | None = None,
    signing_algs: list[str] | None = None,
    access_token_claims: list[str] | None = None,
) -> Iterator[OIDCProvider]:
    """Run the provider at http://127.0.0.1:`port``path` (the issuer: a path such as
    /realms/corp, with a trailing '/' if `path` has one) until the block ends.

    `users`: login -> claims (email, name, groups); `resources`: audience -> {scope, ttl, alg}
    for JWT access tokens; `signing_algs`: one new signing key per algorithm (RS256, PS256,
    ES256), made at each start, so a restart on the same port rotates the provider's keys.
    `access_token_claims`: user claims also put into access tokens (such as groups).
    Raises RuntimeError with the reason when it cannot run (see `unavailable()`)."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    folder = _package_dir()
    issuer = f"http://127.0.0.1:{port}{path}"
    config = {
        "issuer": issuer,
        "port": port,
        "host": "127.0.0.1",
        "clients": clients,
        "users": users,
        "resources": resources or {},
        "signing_algs": signing_algs or ["RS256"],
        "access_token_claims": access_token_claims or [],
    }
    env = {
        **os.environ,
        "OIDC_PROVIDER_CONFIG": json.dumps(config),
        "OIDC_PROVIDER_MODULE": str(folder / "node_modules" / "oidc-provider" / "lib/index.js"),
        "NODE_ENV": "test",
    }
    process, errors = _start_node(env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                discovery = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
                if httpx.get(discovery, timeout=2, verify=tls()).status_code == 200:
                    break
            time.sleep(0.1)
        yield OIDCProvider(issuer=issuer, process=process, errors=errors)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()
        errors.close()
