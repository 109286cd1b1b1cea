"""Single sign-on over OpenID Connect, and role checks.

Browser users sign in with the authorization-code flow (PKCE S256, state, nonce; authlib does
the protocol). Only the claims the app needs (sub, email, name, groups) are kept, server-side.
API callers send `Authorization: Bearer <JWT>` issued by the same provider: issuer, audience,
expiry and not-before are checked and the algorithm is pinned (`none` is never accepted).
Roles come from the groups claim through `sso.roles` in microapp.yaml. There are no local
users and no API keys.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import structlog
from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from guardrails.auditing.log import Actor, audit
from guardrails.core.context import set_actor

log = structlog.get_logger("guardrails.sso")
JWKS_MAX_AGE = 300  # seconds before the provider's signing keys are fetched again


@dataclass(frozen=True)
class User:
    sub: str
    email: str | None
    name: str | None
    groups: tuple[str, ...]
    roles: frozenset[str]
    via: str = "session"  # session | bearer

    @property
    def id(self) -> str:
        """What audit events and pages show: the e-mail when there is one, else the subject."""
        return self.email or self.sub

    @property
    def display_name(self) -> str:
        return self.name or self.id

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    def as_actor(self) -> Actor:
        return Actor(id=self.id, roles=tuple(sorted(self.roles)))


class NotAuthenticated(Exception):
    """No valid session or bearer token; web.py turns it into a sign-in redirect or a 401."""

    def __init__(self, reason: str = "sign-in required"):
        super().__init__(reason)
        self.reason = reason


def _claims_to_user(claims: dict[str, Any], manifest, via: str) -> User:
    groups = claims.get(manifest.groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    groups = tuple(str(g) for g in groups)
    return User(
        sub=str(claims["sub"]),
        email=claims.get("email"),
        name=claims.get("name"),
        groups=groups,
        roles=manifest.roles_for_groups(groups),
        via=via,
    )


class SSO:
    """The OIDC client of one app: sign-in routes and bearer-token verification."""

    def __init__(self, runtime):
        self.runtime = runtime
        settings, manifest = runtime.settings, runtime.manifest
        self.issuer = runtime.sso_issuer
        self.client_id = manifest.sso_client_id
        self.algorithms = manifest.sso_algorithms
        self.redirect_uri = f"{settings.base_url}/auth/callback"
        # A confidential client (secret) that also uses PKCE S256; authlib adds state + nonce.
        client_kwargs: dict[str, Any] = {
            "scope": "openid email profile",
            "code_challenge_method": "S256",
            "timeout": 10,
        }
        self.oauth = OAuth()
        self.client = self.oauth.register(
            name="sso",
            client_id=self.client_id,
            client_secret=runtime.sso_client_secret,
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs=client_kwargs,
        )
        self._jwks: tuple[float, KeySet] | None = None

    # ------------------------------------------------------------------ bearer tokens (APIs)
    async def _key_set(self, force: bool = False) -> KeySet:
        if force or self._jwks is None or time.monotonic() - self._jwks[0] > JWKS_MAX_AGE:
            jwks = await self.client.fetch_jwk_set(force=True)
            self._jwks = (time.monotonic(), KeySet.import_key_set(jwks))
        return self._jwks[1]

    async def verify_bearer(self, token: str) -> dict[str, Any]:
        """Verified claims of a bearer JWT, or NotAuthenticated saying why not."""
        try:
            try:
                decoded = jwt.decode(token, await self._key_set(), algorithms=self.algorithms)
            except JoseError as exc:
                if "kid" not in str(exc).lower():
                    raise
                decoded = jwt.decode(token, await self._key_set(force=True), self.algorithms)
            jwt.JWTClaimsRegistry(
                leeway=30,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise NotAuthenticated(f"bearer token refused: {exc}") from None
        return decoded.claims

    # ------------------------------------------------------------------ browser sign-in
    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route("/login", self.login, methods=["GET"])
        router.add_api_route("/auth/callback", self.callback, methods=["GET"])
        router.add_api_route("/logout", self.logout, methods=["POST"])
        return router

    async def login(self, request: Request, next: str = "/") -> Response:  # noqa: A002
        request.session["next"] = (
            next if next.startswith("/") and not next.startswith("//") else "/"
        )
        return await self.client.authorize_redirect(request, self.redirect_uri)

    async def callback(self, request: Request) -> Response:
        # The client secret comes from guardrails.secrets and may have been rotated.
        self.client.client_secret = self.runtime.sso_client_secret
        try:
            token = await self.client.authorize_access_token(request)
        except OAuthError as exc:
            audit.record(
                "auth.login",
                result="failure",
                metadata={"error": exc.error, "description": exc.description},
            )
            raise HTTPException(400, f"Sign-in failed ({exc.error}). Please try again.") from None
        claims = token.get("userinfo")
        if not claims:
            raise HTTPException(400, "Sign-in failed: the provider sent no ID token.")
        user = _claims_to_user(dict(claims), self.runtime.manifest, via="session")
        target = request.session.get("next", "/")
        # Audit first: if the event cannot be written, AuditError leaves the session signed out.
        audit.record("auth.login", actor=user.as_actor(), metadata={"groups": list(user.groups)})
        request.session.clear()
        request.session.regenerate()  # new session id after sign-in: no session fixation
        request.session.update(
            {
                "user": {
                    "sub": user.sub,
                    "email": user.email,
                    "name": user.name,
                    "groups": list(user.groups),
                },
                "csrf": secrets.token_urlsafe(32),
                "login_at": int(time.time()),
            }
        )
        return RedirectResponse(target, status_code=303)

    async def logout(self, request: Request) -> Response:
        user = session_user(request)
        if user:  # audit first: fail closed, the session stays until the event is written
            audit.record("auth.logout", actor=user.as_actor())
        request.session.clear()
        return RedirectResponse("/signed-out", status_code=303)


# ---------------------------------------------------------------------- dependencies
def session_user(request: Request) -> User | None:
    """The signed-in browser user, from the server-side session (no network)."""
    data = request.session.get("user") if "session" in request.scope else None
    if not data:
        return None
    return _claims_to_user(data, request.app.state.guardrails.manifest, via="session")


def _remember(request: Request, user: User | None) -> User | None:
    request.state.user = user
    if user is not None:
        set_actor(user.as_actor())
    return user


async def current_user(request: Request) -> User | None:
    """The caller, signed in by session or by bearer token; None when anonymous."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        sso: SSO = request.app.state.guardrails.sso
        claims = await sso.verify_bearer(header[7:].strip())
        return _remember(request, _claims_to_user(claims, sso.runtime.manifest, via="bearer"))
    return _remember(request, session_user(request))


async def require_user(user: User | None = Depends(current_user)) -> User:
    if user is None:
        raise NotAuthenticated()
    return user


def require_role(*roles: str):
    """Dependency: the caller must hold one of `roles`; otherwise 403 and a `denied` event."""
    if not roles:
        raise ValueError("require_role needs at least one role")

    async def dependency(request: Request, user: User = Depends(require_user)) -> User:
        if not user.has_role(*roles):
            audit.record(
                "access.denied",
                result="denied",
                resource=("route", request.url.path),
                metadata={"method": request.method, "required_roles": sorted(roles)},
            )
            raise HTTPException(403, f"This needs the {' or '.join(roles)} role.")
        return user

    dependency.__name__ = f"require_role_{'_'.join(roles)}"
    return dependency
