"""Sign-in through the real local OIDC provider, sessions,
roles and bearer tokens. No part of the protocol is patched."""

import base64
import json
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from guardrails.testing import login, provider_id_token


def test_sign_in_uses_pkce_state_and_nonce(guarded, demo):
    client = guarded.client()
    with client:
        first = client.get(f"{guarded.url}/login", follow_redirects=False)
        assert first.status_code == 302
        location = httpx.URL(first.headers["location"])
        params = location.params
        assert params["code_challenge_method"] == "S256"
        assert len(params["code_challenge"]) >= 43
        assert params["state"] and params["nonce"]
        assert params["redirect_uri"] == f"{guarded.url}/auth/callback"
        pre_login_cookie = dict(client.cookies)
        done = login(client, guarded, demo["admin"])
        assert done.url == f"{guarded.url}/"
        body = done.json()
        assert body["user"] == demo["admin"] and "admin" in body["roles"]
        assert dict(client.cookies) != pre_login_cookie  # session id renewed at sign-in


def test_session_cookie_holds_no_claims_and_is_locked_down(guarded, demo):
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
        (cookie,) = [c for c in client.cookies.jar if c.name.endswith("microapp-session")]
        assert demo["admin"] not in cookie.value and "groups" not in cookie.value
        raw = client.get(f"{guarded.url}/login", follow_redirects=False)
        header = raw.headers.get("set-cookie", "")
        assert "HttpOnly" in header and "SameSite=Lax" in header


def test_login_event_is_audited(guarded, demo):
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
    logins = [e for e in guarded.audit_events() if e["action"] == "auth.login"]
    assert logins and logins[-1]["actor"]["id"] == demo["admin"]
    assert logins[-1]["result"] == "success" and logins[-1]["source_ip"] == "127.0.0.1"


def test_callback_with_a_forged_state_is_refused(guarded):
    with guarded.client() as client:
        client.get(f"{guarded.url}/login")
        bad = client.get(f"{guarded.url}/auth/callback", params={"code": "x", "state": "forged"})
    assert bad.status_code == 400
    assert "Sign-in failed" in bad.text
    failures = [e for e in guarded.audit_events() if e["action"] == "auth.login"]
    assert failures[-1]["result"] == "failure"


def test_tampered_session_cookie_is_refused(guarded, demo):
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
        assert client.get(f"{guarded.url}/").status_code == 200
        name, value = next((c.name, c.value) for c in client.cookies.jar)
        forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
        client.cookies.clear()
        client.cookies.set(name, forged, domain="localhost")
        page = client.get(f"{guarded.url}/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        api = client.get(f"{guarded.url}/", headers={"accept": "application/json"})
        assert api.status_code == 401


def test_missing_role_is_denied_and_audited(guarded, non_admin):
    with guarded.client() as client:
        login(client, guarded, non_admin)
        answer = client.get(f"{guarded.url}/admin-only")
    assert answer.status_code == 403
    assert "needs the admin role" in answer.text
    denied = guarded.audit_events()[-1]
    assert denied["action"] == "access.denied" and denied["result"] == "denied"
    assert denied["actor"]["id"] == non_admin
    assert denied["resource"] == {"type": "route", "id": "/admin-only"}


def test_post_without_csrf_token_is_refused_and_audited(guarded, demo):
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
        token = client.get(f"{guarded.url}/").json()["csrf"]
        refused = client.post(f"{guarded.url}/change", data={"x": "1"})
        assert refused.status_code == 403
        assert guarded.audit_events()[-1]["action"] == "security.csrf"
        wrong = client.post(f"{guarded.url}/change", data={"csrf_token": token + "x"})
        assert wrong.status_code == 403
        ok = client.post(f"{guarded.url}/change", data={"csrf_token": token})
        assert ok.status_code == 200 and ok.json() == {"changed": True}
    assert guarded.audit_events()[-1]["action"] == "thing.change"


def test_logout_ends_the_session(guarded, demo):
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
        token = client.get(f"{guarded.url}/").json()["csrf"]
        out = client.post(f"{guarded.url}/logout", data={"csrf_token": token})
        assert out.url.path == "/signed-out"
        again = client.get(f"{guarded.url}/", follow_redirects=False)
        assert again.status_code == 303
    assert guarded.audit_events()[-1]["action"] == "auth.logout"


# ---------------------------------------------------------------------- bearer tokens
def test_real_provider_token_is_accepted_as_bearer(guarded, demo, manifest):
    token = provider_id_token(guarded.runtime.sso_issuer, manifest.sso_client_id, demo["admin"])
    me = httpx.get(f"{guarded.url}/", headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["via"] == "bearer" and me.json()["user"] == demo["admin"]


def test_token_for_another_client_is_refused(guarded, demo):
    token = provider_id_token(guarded.runtime.sso_issuer, "some-other-app", demo["admin"])
    answer = httpx.get(f"{guarded.url}/", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 401


@pytest.fixture
def trusted_key(guarded):
    """Make the app trust one extra signing key, so tokens with chosen claims can be made.

    The verification code that runs is the app's own; only the key set is chosen here.
    """
    key = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
    guarded.app.state.guardrails.sso._jwks = (time.monotonic() + 3600, KeySet([key]))
    return key


def _claims(guarded, **overrides):
    now = int(time.time())
    claims = {
        "iss": guarded.runtime.sso_issuer,
        "aud": guarded.runtime.manifest.sso_client_id,
        "sub": "api-caller",
        "email": "api@example.com",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _call(guarded, token):
    return httpx.get(f"{guarded.url}/", headers={"authorization": f"Bearer {token}"})


def test_token_signed_by_a_trusted_key_is_accepted(guarded, trusted_key):
    token = jwt.encode({"alg": "RS256", "kid": "test-key"}, _claims(guarded), trusted_key)
    assert _call(guarded, token).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 3600},
        {"nbf": int(time.time()) + 3600},
        {"iss": "https://evil.example.com"},
        {"aud": "another-app"},
        {"exp": None},
    ],
    ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "no-expiry"],
)
def test_tokens_with_bad_claims_are_refused(guarded, trusted_key, overrides):
    token = jwt.encode(
        {"alg": "RS256", "kid": "test-key"}, _claims(guarded, **overrides), trusted_key
    )
    assert _call(guarded, token).status_code == 401


def test_forged_signature_is_refused(guarded, trusted_key):
    forger = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
    token = jwt.encode({"alg": "RS256", "kid": "test-key"}, _claims(guarded), forger)
    assert _call(guarded, token).status_code == 401


def test_alg_none_is_refused(guarded, trusted_key):
    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims(guarded))}."
    assert _call(guarded, token).status_code == 401


def test_garbage_bearer_is_refused(guarded):
    assert _call(guarded, "not-a-jwt").status_code == 401
