"""Sign-in through the real local OIDC provider, sessions,
roles and bearer tokens. No part of the protocol is patched."""

import base64
import json
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from guardrails.testing import local_access_token, login, provider_id_token

FORM = "application/x-www-form-urlencoded"


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
    assert logins and logins[-1]["actor"]["email"] == demo["admin"]
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
    assert "needs the role Admin" in answer.text  # the role's label
    denied = guarded.audit_events()[-1]
    assert denied["action"] == "access.denied" and denied["result"] == "denied"
    assert denied["actor"]["email"] == non_admin
    assert denied["resource"] == {"type": "route", "id": "/admin-only"}


def test_post_without_csrf_token_is_refused_and_audited(guarded, demo):
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
        token = client.get(f"{guarded.url}/").json()["csrf"]
        refused = client.post(f"{guarded.url}/change", data={"x": "1"})
        assert refused.status_code == 403
        event = guarded.audit_events()[-1]
        assert event["action"] == "security.csrf"
        assert event["actor"]["email"] == demo["admin"]  # a signed-in caller's: always audited
        wrong = client.post(f"{guarded.url}/change", data={"csrf_token": token + "x"})
        assert wrong.status_code == 403
        ok = client.post(f"{guarded.url}/change", data={"csrf_token": token})
        assert ok.status_code == 200 and ok.json() == {"changed": True}
    assert guarded.audit_events()[-1]["action"] == "thing.change"


@pytest.mark.parametrize(
    "sent",
    [
        {"data": {"csrf_token": "\u00e9"}},  # a form field, percent-encoded UTF-8
        {"content": b"csrf_token=\xe9", "headers": {"content-type": FORM}},  # not UTF-8
        {"headers": {"x-csrf-token": b"\xe9"}},  # the header, Latin-1
        {"files": {"f": ("a.txt", b"x")}, "data": {"csrf_token": "\u2603"}},  # multipart
    ],
    ids=["form-utf8", "form-not-utf8", "header", "multipart"],
)
def test_a_token_beyond_ascii_is_refused_and_audited_not_a_500(guarded, demo, sent):
    """Any client can send a CSRF token that is not ASCII: it is a refusal like any wrong
    token (403, audited), not an error (the constant-time comparison raised on it: a 500
    and no audit event)."""
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
        refused = client.post(f"{guarded.url}/change", **sent)
    assert refused.status_code == 403, refused.text
    event = guarded.audit_events()[-1]
    assert event["action"] == "security.csrf" and event["actor"]["email"] == demo["admin"]


def test_logout_ends_the_session_and_signs_out_at_the_provider(guarded, demo, manifest):
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
        token = client.get(f"{guarded.url}/").json()["csrf"]
        out = client.post(
            f"{guarded.url}/logout", data={"csrf_token": token}, follow_redirects=False
        )
        assert out.status_code == 303
        target = httpx.URL(out.headers["location"])
        meta = httpx.get(f"{guarded.runtime.sso_issuer}/.well-known/openid-configuration")
        end_session = meta.json()["end_session_endpoint"]
        assert str(target.copy_with(query=None)) == end_session  # RP-initiated logout
        assert target.params["post_logout_redirect_uri"] == f"{guarded.url}/signed-out"
        assert target.params["client_id"] == manifest.sso_client_id
        hint = jwt.decode(target.params["id_token_hint"], _provider_keys(guarded))
        assert hint.claims["sub"] == demo["admin"] and hint.claims["nonce"]  # the ID token
        again = client.get(f"{guarded.url}/", follow_redirects=False)
        assert again.status_code == 303
    assert guarded.audit_events()[-1]["action"] == "auth.logout"


def test_logout_without_end_session_endpoint_stays_in_the_app(guarded, demo):
    sso = guarded.app.state.guardrails.sso
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
        sso.client.server_metadata.pop("end_session_endpoint")  # a provider that offers none
        token = client.get(f"{guarded.url}/").json()["csrf"]
        out = client.post(f"{guarded.url}/logout", data={"csrf_token": token})
        assert out.url == f"{guarded.url}/signed-out"
    assert guarded.audit_events()[-1]["action"] == "auth.logout"


def test_sign_out_form_may_redirect_to_the_provider(guarded):
    """Browsers check the CSP's form-action along the sign-out form's redirect."""
    csp = httpx.get(f"{guarded.url}/healthz").headers["content-security-policy"]
    assert f"form-action 'self' {guarded.runtime.sso_issuer}" in csp


def _provider_keys(guarded):
    jwks_uri = httpx.get(f"{guarded.runtime.sso_issuer}/.well-known/openid-configuration").json()[
        "jwks_uri"
    ]
    return KeySet.import_key_set(httpx.get(jwks_uri).json())


# ---------------------------------------------------------------------- bearer tokens
def test_provider_access_token_is_accepted_as_bearer(guarded, demo, manifest):
    token = local_access_token(guarded.runtime.sso_issuer, manifest.sso_client_id, demo["admin"])
    me = httpx.get(f"{guarded.url}/", headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["via"] == "bearer" and me.json()["user"] == demo["admin"]
    assert "admin" in me.json()["roles"]


def test_provider_id_token_is_refused_as_bearer(guarded, demo, manifest):
    token = provider_id_token(guarded.runtime.sso_issuer, manifest.sso_client_id, demo["admin"])
    answer = httpx.get(f"{guarded.url}/", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert "it is an ID token" in answer.json()["detail"]


def test_token_for_another_client_is_refused_naming_the_audience(guarded, demo, manifest):
    token = local_access_token(guarded.runtime.sso_issuer, "some-other-app", demo["admin"])
    answer = httpx.get(f"{guarded.url}/", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    detail = answer.json()["detail"]
    assert "some-other-app" in detail and f"expected {manifest.sso_client_id}" in detail


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


@pytest.mark.parametrize(
    ("header", "overrides"),
    [
        ({}, {"nonce": "n-1"}),
        ({}, {"at_hash": "abc"}),
        ({"typ": "JWT"}, {"azp": "guardrails-test-app"}),
        ({}, {"azp": "guardrails-test-app", "aud": ["guardrails-test-app"]}),
        ({"typ": "JWT"}, {"typ": "ID"}),
    ],
    ids=["nonce", "at_hash", "azp-and-aud-are-the-client", "no-typ-same-shape", "keycloak-id"],
)
def test_id_tokens_are_refused_as_bearer(guarded, trusted_key, header, overrides):
    token = jwt.encode(
        {"alg": "RS256", "kid": "test-key", **header}, _claims(guarded, **overrides), trusted_key
    )
    answer = _call(guarded, token)
    assert answer.status_code == 401
    assert "it is an ID token" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("header", "overrides"),
    [
        ({"typ": "at+jwt"}, {"azp": "guardrails-test-app"}),
        ({"typ": "JWT"}, {"azp": "guardrails-test-app", "typ": "Bearer"}),
        ({"typ": "JWT"}, {"azp": "another-client"}),
        ({"typ": "JWT"}, {"azp": "guardrails-test-app", "aud": ["guardrails-test-app", "x"]}),
    ],
    ids=["rfc9068", "keycloak-access-token", "other-azp", "several-audiences"],
)
def test_access_tokens_are_accepted(guarded, trusted_key, header, overrides):
    token = jwt.encode(
        {"alg": "RS256", "kid": "test-key", **header}, _claims(guarded, **overrides), trusted_key
    )
    assert _call(guarded, token).status_code == 200


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


def test_refusals_are_counted_by_reason(guarded, demo, manifest):
    """Issue 16, item 7: a forged bearer token, a tampered session cookie, a missing CSRF token
    and a forged callback leave a trace: the counter microapp.security.refused, by reason."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    telemetry = guarded.runtime.telemetry
    telemetry.security_refusals = meter.create_counter("microapp.security.refused")
    forged = jwt.encode(
        {"alg": "RS256", "kid": "forger"},
        {"iss": guarded.runtime.sso_issuer, "sub": "m", "exp": int(time.time()) + 60},
        RSAKey.generate_key(2048),
    )
    httpx.get(f"{guarded.url}/", headers={"authorization": f"Bearer {forged}"})
    with guarded.client() as client:
        login(client, guarded, demo["admin"])
        client.post(f"{guarded.url}/change", data={"x": "1"})  # no CSRF token
        client.get(f"{guarded.url}/login", follow_redirects=False)
        client.get(f"{guarded.url}/auth/callback", params={"code": "x", "state": "forged"})
        (cookie,) = [c for c in client.cookies.jar if c.name.endswith("microapp-session")]
        client.cookies.set(cookie.name, cookie.value + "x", domain=cookie.domain)
        client.get(f"{guarded.url}/", follow_redirects=False)
    counted = {
        point.attributes["reason"]: point.value
        for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        for point in metric.data.data_points
    }
    for reason in ("bearer_refused", "csrf", "code_injection", "session_cookie_tampered"):
        assert counted.get(reason, 0) >= 1, (reason, counted)
