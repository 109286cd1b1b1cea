"""Single sign-on over OpenID Connect, and role checks.

Browser users sign in with the authorization-code flow (PKCE S256, state, nonce; authlib does
the protocol) with the scopes of `sso.scopes`. Only the claims the app needs (sub, email, name,
groups) are kept, server-side; the userinfo endpoint's claims are merged in when the ID token
lacks them (`sso.userinfo`). The discovery document must name exactly the configured issuer.
API callers send `Authorization: Bearer <JWT access token>` issued by the same provider: issuer,
audience (`sso.audience`), expiry and not-before are checked, the algorithm is pinned (`none`
is never accepted) and ID tokens are refused. Roles come from the claim at `sso.roles_claim`
(a dotted path works: realm_access.roles) through `sso.roles` in microapp.yaml. There are no
local users and no API keys. A provider that cannot be used (down, TLS refused, bad discovery
document) gives a 503 page saying what to check, and an audit event.
"""

from __future__ import annotations

import functools
import json
import secrets
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
import structlog
import truststore
from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from guardrails.auditing.log import Actor, audit
from guardrails.core.context import set_actor
from guardrails.web import quota
from guardrails.web.security import audit_denial, security_event

MAX_SEEN_JTI = 10_000  # logout token ids remembered against replay (10 minutes, at most this many)
log = structlog.get_logger("guardrails.sso")
JWKS_MAX_AGE = 300  # seconds before the provider's signing keys are fetched again
JWKS_MIN_REFRESH = 60  # seconds at least between two fetches for an unknown key id
LOGIN_STATE_MAX_AGE = 600  # seconds a sign-in may take at the provider
NEXT_MAX_LENGTH = 1000  # characters of the page to return to after sign-in
BACKCHANNEL_LOGOUT_PATH = "/auth/backchannel-logout"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def user_key(issuer: str, sub: str) -> str:
    """A person's one stable id: the provider's issuer and their subject, `issuer#sub`.

    OpenID Connect guarantees `sub` unique and never reassigned within one issuer, and an issuer
    has no fragment, so the `#` is unambiguous. The e-mail is not an id: it may be missing (an
    access token without the claim), change, or be reused.
    """
    return f"{issuer}#{sub}"


def person(user_id: str | None) -> str:
    """A stored user id as people read it: the subject without the issuer (`issuer#sub` ->
    `sub`, which is the e-mail with many providers); anything else as it is."""
    return (user_id or "").rsplit("#", 1)[-1]


@dataclass(frozen=True)
class User:
    sub: str
    email: str | None
    name: str | None
    groups: tuple[str, ...]
    roles: frozenset[str]
    via: str = "session"  # session | bearer
    issuer: str = ""

    @property
    def id(self) -> str:
        """The stable key (issuer + sub) used for ownership, four-eyes, rate limits and the
        audit's actor.id: the same for a browser session and a bearer token of one person."""
        return user_key(self.issuer, self.sub)

    @property
    def label(self) -> str:
        """For display only: the e-mail when there is one, else the subject."""
        return self.email or self.sub

    @property
    def display_name(self) -> str:
        return self.name or self.label

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    def as_actor(self) -> Actor:
        return Actor(id=self.id, roles=tuple(sorted(self.roles)), email=self.email)


class NotAuthenticated(Exception):
    """No valid session or bearer token; web.py turns it into a sign-in redirect or a 401."""

    def __init__(self, reason: str = "sign-in required"):
        super().__init__(reason)
        self.reason = reason


class ProviderError(Exception):
    """The identity provider cannot be used: web.py answers 503 with `check` and audits it.

    `reason` is short (the audit event's), `check` says what the operator should look at.
    """

    def __init__(self, reason: str, check: str, step: str = "discovery"):
        super().__init__(f"{reason}: {check}")
        self.reason = reason
        self.check = check
        self.step = step


def safe_next(target: str) -> str:
    """Where to go after sign-in: a path on this app, bounded; anything else is "/"."""
    if (
        not isinstance(target, str)
        or len(target) > NEXT_MAX_LENGTH
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return "/"
    return target


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """The claim at `path`: a claim name, or a dotted path into nested claims
    (`realm_access.roles`, `resource_access.my-app.roles`). A name that itself contains dots
    (`https://example.com/roles`, a client id `my.app`) is found too; None when absent."""
    if path in claims:
        return claims[path]
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if isinstance(claims.get(head), dict):
            found = claim_at(claims[head], ".".join(parts[cut:]))
            if found is not None:
                return found
    return None


def _group_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, dict):  # e.g. {"role": {...}} maps: the names are the keys
        value = list(value)
    return tuple(str(g) for g in value if not isinstance(g, dict | list))


def _user(data: dict[str, Any], groups: tuple[str, ...], manifest, via: str, issuer: str) -> User:
    return User(
        issuer=str(data.get("iss") or issuer),
        sub=str(data["sub"]),
        email=data.get("email"),
        name=data.get("name"),
        groups=groups,
        roles=manifest.roles_for_groups(groups),
        via=via,
    )


def _claims_to_user(claims: dict[str, Any], manifest, via: str, issuer: str) -> User:
    groups = _group_list(claim_at(claims, manifest.roles_claim))
    return _user(claims, groups, manifest, via, issuer)


@functools.lru_cache(maxsize=1)  # by text: a rotated key is a new text (the old one let go)
def private_key(text: str) -> RSAKey | ECKey | OKPKey:
    """A private key from PEM or JWK (JSON) text; ValueError saying why not.

    Imported once per text: cryptography checks a private RSA key as it loads it (about
    50 ms of CPU), which each sign-in's callback did on the event loop."""
    data: Any = text.strip()
    if data.startswith("{"):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
    kty = data.get("kty") if isinstance(data, dict) else None
    for cls in (RSAKey, ECKey, OKPKey):
        if kty and cls.key_type != kty:
            continue
        try:
            key = cls.import_key(data)
        except Exception:  # noqa: BLE001, S112 - try the next key type
            continue
        if key.is_private:
            return key
        raise ValueError("it is a public key; the private key is needed")
    raise ValueError("not an RSA, EC or OKP private key in PEM or JWK form")


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _tls_context(ca_file: str | None, base: Path) -> ssl.SSLContext:
    """The trust for the provider's certificate: `sso.ca_file`, else the system trust store."""
    if ca_file:
        path = Path(ca_file) if Path(ca_file).is_absolute() else base / ca_file
        return ssl.create_default_context(cafile=str(path))
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class SSO:
    """The OIDC client of one app: sign-in routes and bearer-token verification."""

    def __init__(self, runtime):
        self.runtime = runtime
        settings, manifest = runtime.settings, runtime.manifest
        self.manifest = manifest
        self.issuer = runtime.sso_issuer  # exact: a trailing "/" is part of the issuer
        self.client_id = manifest.sso_client_id
        self.algorithms = manifest.sso_algorithms
        self.audiences = manifest.sso_audiences
        self.base_url = settings.base_url
        self.redirect_uri = f"{settings.base_url}/auth/callback"
        self.discovery_url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        self._tls_problem: str | None = None
        try:
            verify: ssl.SSLContext | bool = _tls_context(
                manifest.sso_ca_file, Path(manifest.path).parent
            )
        except (OSError, ssl.SSLError) as exc:
            self._tls_problem = f"sso.ca_file {manifest.sso_ca_file} cannot be used: {exc}"
            verify = True
        # A confidential client (secret) that also uses PKCE S256; authlib adds state + nonce.
        client_kwargs: dict[str, Any] = {
            "scope": " ".join(manifest.sso_scopes),
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": manifest.sso_token_endpoint_auth_method,
            "timeout": 10,
            "verify": verify,
        }
        # private_key_jwt: the secret sso-client-secret holds the client's private key (PEM or
        # JWK), and a signed assertion replaces the shared secret at the token endpoint.
        self._assertion = (
            PrivateKeyJWT()
            if manifest.sso_token_endpoint_auth_method == "private_key_jwt"  # noqa: S105
            else None
        )
        self.oauth = OAuth()
        self.client = self.oauth.register(
            name="sso",
            client_id=self.client_id,
            client_secret=runtime.sso_client_secret,
            server_metadata_url=self.discovery_url,
            client_kwargs=client_kwargs,
            client_auth_methods=[self._assertion] if self._assertion else None,
        )
        self._jwks: tuple[float, KeySet] | None = None
        self._forced_at: float | None = None  # the last fetch for an unknown key id
        self.leeway = 30  # seconds of clock skew allowed on exp / nbf of bearer tokens
        self._seen_jti: dict[str, float] = {}  # logout tokens already used (replay)

    # ------------------------------------------------------------------ the provider
    def provider_error(self, exc: BaseException, step: str) -> ProviderError:
        """What went wrong talking to the provider, and what the operator should check."""
        if isinstance(exc, ProviderError):
            return exc
        chain = list(_causes(exc))
        text = " ".join(str(e) for e in chain)
        names = {type(e).__name__ for e in chain}
        if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or (
            "CERTIFICATE_VERIFY_FAILED" in text
        ):
            return ProviderError(
                "TLS verification failed",
                f"the identity provider's certificate ({self.issuer}) is not trusted by this "
                "app. If your company's CA signs it, set sso.ca_file in microapp.yaml to that "
                "CA's PEM file, or add the CA to the system trust store (SSL_CERT_FILE).",
                step,
            )
        if names & {"HTTPStatusError"}:
            status = next(e for e in chain if type(e).__name__ == "HTTPStatusError")
            return ProviderError(
                f"the provider answered HTTP {status.response.status_code}",
                f"{status.request.url} answered {status.response.status_code}: check that "
                f"sso.issuer ({self.issuer}) is the provider's issuer URL.",
                step,
            )
        if names & {
            "ConnectError",
            "ConnectTimeout",
            "ReadTimeout",
            "TimeoutException",
            "PoolTimeout",
            "NetworkError",
            "ReadError",
            "RemoteProtocolError",
            "WriteError",
            "ProxyError",
        } or any(isinstance(e, OSError) for e in chain):
            return ProviderError(
                "issuer unreachable",
                f"the identity provider {self.issuer} could not be reached ({exc}). Check the "
                "issuer URL (sso.issuer, MICROAPP_SSO_ISSUER) and that this app can reach it "
                "(DNS, firewall, proxy).",
                step,
            )
        return ProviderError(
            "bad discovery document",
            f"{self.discovery_url} did not give a usable OpenID discovery document ({exc}).",
            step,
        )

    async def metadata(self, step: str = "discovery") -> dict[str, Any]:
        """The provider's discovery document, checked: its issuer must be the configured one."""
        if self._tls_problem:
            raise ProviderError("ca_file unusable", self._tls_problem, step)
        try:
            meta = await self.client.load_server_metadata()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a clear ProviderError
            self.client.server_metadata.clear()
            raise self.provider_error(exc, step) from None
        if meta.get("issuer") != self.issuer:
            found = meta.get("issuer")
            self.client.server_metadata.clear()  # read it again next time: it may be fixed
            raise ProviderError(
                "issuer mismatch",
                f"the discovery document at {self.discovery_url} names the issuer {found!r}, "
                f"but this app is configured with {self.issuer!r} (sso.issuer or "
                "MICROAPP_SSO_ISSUER). They must be identical, a trailing '/' included.",
                step,
            )
        missing = [
            k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not meta.get(k)
        ]
        if missing:
            self.client.server_metadata.clear()
            raise ProviderError(
                "bad discovery document",
                f"{self.discovery_url} lacks {', '.join(missing)}.",
                step,
            )
        return meta

    # ------------------------------------------------------------------ bearer tokens (APIs)
    async def _key_set(self, force: bool = False) -> KeySet:
        """The provider's signing keys, cached for JWKS_MAX_AGE. `force` (an unknown key id:
        the provider rotated its keys) fetches them again at once, but a second forced fetch
        waits JWKS_MIN_REFRESH: tokens with made-up key ids cannot make the app hammer the
        provider."""
        now = time.monotonic()
        recently = self._forced_at is not None and now - self._forced_at < JWKS_MIN_REFRESH
        if force and self._jwks is not None and recently:
            return self._jwks[1]
        if force or self._jwks is None or now - self._jwks[0] > JWKS_MAX_AGE:
            await self.metadata("jwks")
            try:
                jwks = await self.client.fetch_jwk_set(force=True)
                self._jwks = (time.monotonic(), KeySet.import_key_set(jwks))
            except Exception as exc:  # noqa: BLE001
                raise self.provider_error(exc, "jwks") from None
            if force:
                self._forced_at = now
        return self._jwks[1]

    async def _decode(self, token: str, keys: KeySet, algorithms: list[str]):
        """The token's signature checked with the provider's keys; on a key id the set does not
        know (the provider rotated its keys), the keys are fetched again once."""
        try:
            return jwt.decode(token, keys, algorithms=algorithms)
        except JoseError as exc:
            if "kid" not in str(exc).lower():
                raise
            return jwt.decode(token, await self._key_set(force=True), algorithms=algorithms)

    async def verify_bearer(self, token: str) -> dict[str, Any]:
        """Verified claims of a bearer JWT access token, or NotAuthenticated saying why not.

        ProviderError when the provider's keys cannot be fetched (503, not the caller's fault).
        """
        keys = await self._key_set()
        try:
            decoded = await self._decode(token, keys, self.algorithms)
            jwt.JWTClaimsRegistry(
                leeway=self.leeway,
                iss={"essential": True, "value": self.issuer},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise NotAuthenticated(f"bearer token refused: {exc}") from None
        claims = decoded.claims
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        why = self._id_token_reason(decoded.header, claims, audiences)
        if why:
            raise NotAuthenticated(
                f"bearer token refused: it is an ID token ({why}); APIs take access tokens "
                f"issued for the audience {' or '.join(self.audiences)}"
            )
        if not set(audiences) & set(self.audiences):
            raise NotAuthenticated(
                f"bearer token refused: its audience {audiences} is not this app's; expected "
                f"{' or '.join(self.audiences)} (sso.audience)"
            )
        return claims

    def _id_token_reason(self, header, claims, audiences) -> str | None:
        """Why the token is an ID token (None for an access token)."""
        typ = str(header.get("typ") or "").lower()
        if typ in ("at+jwt", "application/at+jwt"):  # RFC 9068 access token
            return None
        for claim in ("nonce", "at_hash"):
            if claim in claims:
                return f"it carries {claim}"
        if str(claims.get("typ") or "").lower() == "id":  # Keycloak's token type claim
            return "its typ claim is ID"
        if str(claims.get("typ") or "").lower() == "bearer":  # Keycloak's access token
            return None
        if (
            self.manifest.sso_id_token_shape_check
            and typ in ("", "jwt")
            and claims.get("azp") == self.client_id
            and audiences == [self.client_id]
        ):
            return "azp and its only aud are this app's client id (sso.id_token_shape_check)"
        return None

    # ------------------------------------------------------------------ browser sign-in
    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route("/login", self.login, methods=["GET"])
        router.add_api_route("/auth/callback", self.callback, methods=["GET"])
        router.add_api_route("/logout", self.logout, methods=["POST"])
        router.add_api_route(BACKCHANNEL_LOGOUT_PATH, self.backchannel_logout, methods=["POST"])
        return router

    # The pre-login state (state, nonce, PKCE verifier, where to go next) travels in a signed,
    # short-lived cookie, not in a session row: an anonymous GET /login costs the server no
    # storage, and the state expires with the cookie (LOGIN_STATE_MAX_AGE).
    def _login_cookie_name(self) -> str:
        return "__Host-microapp-login" if self.runtime.settings.secure_cookies else "microapp-login"

    def _login_serializer(self) -> URLSafeTimedSerializer:
        keys = [k for k in (self.runtime.previous_session_key, self.runtime.session_key) if k]
        return URLSafeTimedSerializer(keys, salt="guardrails.login-state")

    def _login_cookie(self, value: str, max_age: int) -> str:
        parts = [f"{self._login_cookie_name()}={value}", "Path=/", f"Max-Age={max_age}"]
        parts += ["HttpOnly", "SameSite=Lax"]
        if self.runtime.settings.secure_cookies:
            parts.append("Secure")
        return "; ".join(parts)

    async def login(self, request: Request, next: str = "/") -> Response:  # noqa: A002
        await self.metadata("login")
        try:
            rv = await self.client.create_authorization_url(self.redirect_uri)
        except Exception as exc:  # noqa: BLE001
            raise self.provider_error(exc, "login") from None
        state = {k: rv[k] for k in ("state", "nonce", "code_verifier") if rv.get(k)}
        state["next"] = safe_next(next)
        signed = self._login_serializer().dumps(state)
        response = RedirectResponse(rv["url"], status_code=302)
        response.headers.append("set-cookie", self._login_cookie(signed, LOGIN_STATE_MAX_AGE))
        return response

    def _login_state(self, request: Request) -> dict[str, Any]:
        """The signed pre-login state of this browser, checked against the callback's state."""
        raw = request.cookies.get(self._login_cookie_name())
        if not raw:
            security_event("callback_without_state", "no pre-login state cookie")
            raise self._refused(
                "no_login_state",
                "no pre-login state cookie (expired, or another browser)",
                "Sign-in failed: the sign-in took too long or started in another browser. "
                "Please try again.",
            )
        try:
            data = self._login_serializer().loads(raw, max_age=LOGIN_STATE_MAX_AGE)
        except BadSignature:
            security_event("login_state_tampered", "the pre-login state cookie was not ours")
            raise self._refused(
                "bad_login_state",
                "pre-login state cookie expired or tampered with",
                "Sign-in failed: the sign-in took too long. Please try again.",
            ) from None
        if not isinstance(data, dict) or data.get("state") != request.query_params.get("state"):
            security_event("code_injection", "the callback's state is not this browser's")
            raise self._refused(
                "mismatching_state",
                "the callback's state is not the one this browser was sent with",
                "Sign-in failed (mismatching state). Please try again.",
            )
        return data

    def _refused(self, error: str, description: str, message: str) -> HTTPException:
        audit_denial(
            "auth.login",
            result="failure",
            metadata={"error": error, "description": description},
        )
        return HTTPException(400, message)

    def _client_credential(self) -> Any:
        """The client secret, or with private_key_jwt the private key (both come from
        guardrails.secrets and may have been rotated)."""
        secret = self.runtime.sso_client_secret
        if self._assertion is None:
            return secret
        try:
            key = private_key(secret or "")
        except ValueError as exc:
            raise ProviderError(
                "client key unusable",
                "sso.token_endpoint_auth_method is private_key_jwt, so the secret "
                f"sso-client-secret must hold the client's private key (PEM or JWK): {exc}",
                "callback",
            ) from None
        self._assertion.alg = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}[key.key_type]
        self._assertion.headers = {"kid": key.kid} if key.get("kid") else None
        return key

    async def callback(self, request: Request) -> Response:
        self.client.client_secret = self._client_credential()
        meta = await self.metadata("callback")
        error = request.query_params.get("error")
        try:
            if error:
                raise OAuthError(error, request.query_params.get("error_description"))
            pending = self._login_state(request)
            token = await self.client.fetch_access_token(
                redirect_uri=self.redirect_uri,
                code=request.query_params.get("code"),
                state=pending["state"],
                code_verifier=pending.get("code_verifier"),
            )
            if "id_token" in token:
                token["userinfo"] = await self.client.parse_id_token(
                    token, nonce=pending.get("nonce")
                )
        except HTTPException:
            raise
        except OAuthError as exc:
            if exc.error in ("invalid_client", "unauthorized_client"):  # the app's set-up
                raise ProviderError(
                    "client authentication refused",
                    f"the provider refused the app's client credentials ({exc.error}: "
                    f"{exc.description}). Check the client secret (sso-client-secret) and that "
                    "sso.token_endpoint_auth_method "
                    f"({self.manifest.sso_token_endpoint_auth_method}) is the method registered "
                    "for the client at the provider.",
                    "callback",
                ) from None
            if exc.error == "invalid_grant":
                security_event("code_injection", f"the provider refused the code: {exc.error}")
            raise self._refused(
                exc.error, exc.description, f"Sign-in failed ({exc.error}). Please try again."
            ) from None
        except JoseError as exc:  # nonce mismatch, wrong issuer or audience, bad signature
            security_event("id_token_refused", str(exc))
            raise self._refused(
                "invalid_id_token",
                str(exc),
                f"Sign-in failed: the provider's ID token was refused ({exc}). Please try again.",
            ) from None
        except Exception as exc:  # noqa: BLE001 - the provider failed: 503 with what to check
            raise self.provider_error(exc, "callback") from None
        claims = dict(token.get("userinfo") or {})
        if not claims:
            raise self._refused(
                "no_id_token", "no ID token", "Sign-in failed: the provider sent no ID token."
            )
        claims = await self._with_userinfo(claims, token, meta)
        user = _claims_to_user(claims, self.manifest, via="session", issuer=self.issuer)
        target = pending["next"]
        # Audit first: if the event cannot be written, AuditError leaves the session signed out.
        audit.record("auth.login", actor=user.as_actor(), metadata={"groups": list(user.groups)})
        request.session.clear()
        request.session.regenerate()  # new session id after sign-in: no session fixation
        request.session.update(
            {
                "user": {
                    "iss": user.issuer,
                    "sub": user.sub,
                    "email": user.email,
                    "name": user.name,
                    "groups": list(user.groups),
                },
                "csrf": secrets.token_urlsafe(32),
                "login_at": int(time.time()),
                # server-side only (the cookie holds a session id): the logout hint, and the
                # provider's session id for back-channel logout
                "id_token": token.get("id_token"),
                "sid": claims.get("sid"),
            }
        )
        response = RedirectResponse(target, status_code=303)
        response.headers.append("set-cookie", self._login_cookie("", 0))
        return response

    async def _with_userinfo(self, claims, token, meta) -> dict[str, Any]:
        """The ID token's claims, with the userinfo endpoint's merged in when configured or
        needed: a conformant provider puts only `sub` in the ID token when it issues an access
        token (OIDC Core 5.4)."""
        wanted = self.manifest.sso_userinfo
        if wanted is None:
            wanted = any(claims.get(k) is None for k in ("email", "name")) or (
                claim_at(claims, self.manifest.roles_claim) is None
            )
        if not wanted or not meta.get("userinfo_endpoint") or not token.get("access_token"):
            return claims
        try:
            info = dict(await self.client.userinfo(token=token))
        except Exception as exc:  # noqa: BLE001
            raise self.provider_error(exc, "userinfo") from None
        if str(info.get("sub")) != str(claims["sub"]):  # OIDC Core 5.3.2
            raise self._refused(
                "userinfo_sub_mismatch",
                "userinfo sub differs from the ID token's",
                "Sign-in failed: the provider's user information is for another user.",
            )
        return {**info, **{k: v for k, v in claims.items() if v is not None}}

    async def backchannel_logout(self, request: Request) -> Response:
        """OpenID Connect Back-Channel Logout: the provider posts a signed logout token when a
        user's session ends there; the app ends that user's sessions (by `sid`, else `sub`).
        The token authenticates the call, so no CSRF token is asked for."""
        form = await request.form()
        logout_token = form.get("logout_token")
        try:
            claims = await self._verify_logout_token(str(logout_token or ""))
        except NotAuthenticated as exc:
            security_event("logout_token_refused", exc.reason)
            audit_denial(
                "auth.logout",
                result="failure",
                metadata={"via": "backchannel", "reason": exc.reason},
            )
            return JSONResponse(
                {"error": "invalid_request", "error_description": exc.reason},
                status_code=400,
                headers={"cache-control": "no-store"},
            )
        sub, sid = claims.get("sub"), claims.get("sid")
        store = request.app.state.guardrails.session_store
        ended = await anyio.to_thread.run_sync(store.end_user_sessions, sub, sid)
        audit.record(
            "auth.logout",
            resource=("user", str(sub or sid)),
            metadata={"via": "backchannel", "sessions_ended": ended},
        )
        return Response(status_code=200, headers={"cache-control": "no-store"})

    async def _verify_logout_token(self, token: str) -> dict[str, Any]:
        """Checks of OpenID Connect Back-Channel Logout 1.0, section 2.6."""
        if not token:
            raise NotAuthenticated("no logout_token")
        meta = await self.metadata("backchannel-logout")
        algorithms = [
            a
            for a in {*self.algorithms, *meta.get("id_token_signing_alg_values_supported", [])}
            if a.lower() != "none"
        ]
        try:
            decoded = await self._decode(token, await self._key_set(), algorithms)
            jwt.JWTClaimsRegistry(
                leeway=self.leeway,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                iat={"essential": True},
                jti={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise NotAuthenticated(f"logout token refused: {exc}") from None
        claims = decoded.claims
        if not isinstance(claims.get("events"), dict) or BACKCHANNEL_EVENT not in claims["events"]:
            raise NotAuthenticated("logout token refused: no back-channel logout event")
        if "nonce" in claims:
            raise NotAuthenticated("logout token refused: it carries a nonce")
        if not claims.get("sub") and not claims.get("sid"):
            raise NotAuthenticated("logout token refused: neither sub nor sid")
        jti = str(claims["jti"])
        now = time.monotonic()
        self._seen_jti = {k: t for k, t in self._seen_jti.items() if now - t < 600}
        while len(self._seen_jti) >= MAX_SEEN_JTI:  # bounded: the oldest go first
            self._seen_jti.pop(next(iter(self._seen_jti)))
        if jti in self._seen_jti:
            raise NotAuthenticated("logout token refused: already used (jti)")
        self._seen_jti[jti] = now
        return claims

    async def logout(self, request: Request) -> Response:
        user = session_user(request)
        if user:  # audit first: fail closed, the session stays until the event is written
            audit.record("auth.logout", actor=user.as_actor())
        id_token = request.session.get("id_token") if "session" in request.scope else None
        request.session.clear()
        end_session = None
        if id_token:
            try:
                end_session = (await self.metadata("logout")).get("end_session_endpoint")
            except ProviderError as exc:  # the app session is over anyway
                log.warning("provider logout skipped", reason=exc.reason, check=exc.check)
        if not end_session:
            return RedirectResponse("/signed-out", status_code=303)
        params = {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": f"{self.base_url}/signed-out",
            "client_id": self.client_id,
        }
        joiner = "&" if "?" in end_session else "?"
        return RedirectResponse(f"{end_session}{joiner}{urlencode(params)}", status_code=303)


# ---------------------------------------------------------------------- dependencies
def session_user(request: Request) -> User | None:
    """The signed-in browser user, from the server-side session (no network)."""
    data = request.session.get("user") if "session" in request.scope else None
    if not data:
        return None
    gr = request.app.state.guardrails
    groups = _group_list(data.get("groups"))
    return _user(data, groups, gr.manifest, via="session", issuer=gr.sso.issuer)


_CALLER = "guardrails.caller"  # scope key: the caller, once authenticated in this request


def _remember(request: Request, user: User | None) -> User | None:
    request.scope[_CALLER] = (user,)
    request.state.user = user
    if user is not None:
        set_actor(user.as_actor())
    return user


async def _caller(request: Request) -> User | None:
    """The caller, authenticated once per request whichever dependency asks first, and counted
    once against the app's request quota (guardrails.web.quota: 429 beyond it)."""
    known = request.scope.get(_CALLER)
    if known is not None:
        return known[0]
    header = next(
        (v.decode("latin-1") for k, v in request.scope["headers"] if k == b"authorization"), ""
    )
    if header[:7].lower() == "bearer ":
        sso: SSO = request.app.state.guardrails.sso
        try:
            claims = await sso.verify_bearer(header[7:].strip())
        except NotAuthenticated as exc:
            security_event("bearer_refused", exc.reason)
            raise
        user = _claims_to_user(claims, sso.manifest, via="bearer", issuer=sso.issuer)
    else:
        user = session_user(request)
    _remember(request, user)
    if user is not None:
        await quota.enforce_quota(request, user.id)
    return user


# The dependencies below take only the request and call each other as plain functions, not
# through Depends: FastAPI solves one dependency per route instead of a chain of three.
async def current_user(request: Request) -> User | None:
    """The caller, signed in by session or by bearer token; None when anonymous."""
    return await _caller(request)


async def require_user(request: Request) -> User:
    """The caller; not signed in: a sign-in redirect (pages) or 401 (APIs)."""
    user = await _caller(request)
    if user is None:
        raise NotAuthenticated()
    return user


def require_role(*roles: str):
    """Dependency: the caller must hold one of `roles`; otherwise 403 and a `denied` event."""
    if not roles:
        raise ValueError("require_role needs at least one role")
    wanted = frozenset(roles)

    async def dependency(request: Request) -> User:
        user = await require_user(request)
        if not user.roles & wanted:
            audit.record(
                "access.denied",
                result="denied",
                resource=("route", request.url.path),
                metadata={"method": request.method, "required_roles": sorted(roles)},
            )
            manifest = request.app.state.guardrails.manifest
            labels = [manifest.role_label(role) for role in roles]
            raise HTTPException(403, f"This needs the role {' or '.join(labels)}.")
        return user

    dependency.__name__ = f"require_role_{'_'.join(roles)}"
    return dependency
