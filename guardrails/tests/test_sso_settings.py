"""The `sso:` settings of microapp.yaml, issuer handling, and identity-provider failures
(down, TLS not trusted, bad or foreign discovery document, nonce mismatch): each is a clear page
and an audit event, never a bare 500."""

import copy
import dataclasses
import datetime as dt
import json
import ssl
import threading

import httpx
import pytest
import werkzeug.serving
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from oidc_provider_mock import app as idp_app

from guardrails.core.manifest import Manifest, validate
from guardrails.core.runtime import build_runtime
from guardrails.testing import free_port, login, serve, test_settings
from guardrails.testing.devserver import demo_users
from guardrails.web.sso import claim_at, private_key

from .conftest import tiny_app


def with_sso(manifest: Manifest, **sso) -> Manifest:
    raw = copy.deepcopy(manifest.raw)
    raw["sso"].update(sso)
    assert validate(raw) == [], validate(raw)
    return dataclasses.replace(manifest, raw=raw)


@pytest.fixture
def app_with(tmp_path, idp):
    """Serve the tiny app with changed `sso:` settings (and optionally another issuer)."""

    def start(manifest: Manifest, issuer: str | None = None, **settings):
        runtime = build_runtime(test_settings(tmp_path, issuer or idp, **settings), manifest)
        return serve(tiny_app, runtime)

    return start


# ---------------------------------------------------------------------- manifest settings
def test_defaults_are_safe(manifest):
    assert manifest.sso_scopes == ["openid", "email", "profile"]
    assert manifest.roles_claim == manifest.groups_claim == "groups"
    assert manifest.sso_userinfo is None  # merged when the ID token lacks the claims
    assert manifest.sso_token_endpoint_auth_method == "client_secret_basic"
    assert manifest.sso_ca_file is None
    assert manifest.sso_audiences == [manifest.sso_client_id]
    assert manifest.sso_id_token_shape_check is True


def test_settings_are_read(manifest):
    m = with_sso(
        manifest,
        scopes=["openid", "email", "groups"],
        roles_claim="realm_access.roles",
        userinfo=False,
        token_endpoint_auth_method="client_secret_post",
        ca_file="certs/corp-ca.pem",
        audience=["api://approvals", "guardrails-test-app"],
    )
    assert m.sso_scopes == ["openid", "email", "groups"]
    assert m.roles_claim == "realm_access.roles" and m.sso_userinfo is False
    assert m.sso_token_endpoint_auth_method == "client_secret_post"
    assert m.sso_audiences == ["api://approvals", "guardrails-test-app"]
    assert with_sso(manifest, audience="api://x").sso_audiences == ["api://x"]


@pytest.mark.parametrize(
    ("sso", "field"),
    [
        ({"scopes": ["email", "profile"]}, "sso.scopes"),  # openid is required
        ({"scopes": ["openid", "two words"]}, "sso.scopes[1]"),
        ({"token_endpoint_auth_method": "none"}, "sso.token_endpoint_auth_method"),
        ({"token_endpoint_auth_method": "client_secret_jwt"}, "sso.token_endpoint_auth_method"),
        ({"userinfo": "yes"}, "sso.userinfo"),
        ({"audience": []}, "sso.audience"),
        ({"roles_claim": ""}, "sso.roles_claim"),
        ({"roles": {"admin": [""]}}, "sso.roles.admin[0]"),
        ({"roles": {"admin": ["   "]}}, "sso.roles.admin[0]"),
        ({"roles": {"admin": ["x" * 257]}}, "sso.roles.admin[0]"),
    ],
)
def test_bad_settings_are_refused(manifest, sso, field):
    raw = copy.deepcopy(manifest.raw)
    raw["sso"].update(sso)
    problems = validate(raw)
    assert any(p.startswith(f"{field}:") for p in problems), problems


def test_group_names_companies_use_are_accepted(manifest):
    groups = [
        "/o-approvers",  # a Keycloak group path
        "HR Approvers",  # spaces
        "CN=HR Approvers,OU=Groups,DC=corp,DC=example,DC=com",  # an LDAP DN
        "hr-approvers@corp.example.com",  # a group e-mail
        "0b6c1c1e-6f4f-4b35-9a77-2f1c1a1b2c3d",  # an Entra ID object id
        "x" * 256,
    ]
    m = with_sso(manifest, roles={"approver": groups})
    assert m.roles_for_groups(("/o-approvers",)) == {"approver"}


def test_roles_claim_is_a_path_into_nested_claims():
    claims = {
        "sub": "u",
        "realm_access": {"roles": ["o-approvers"]},
        "resource_access": {"my.app": {"roles": ["admin"]}, "other": {"roles": ["x"]}},
        "https://example.com/roles": ["auth0-role"],
        "groups": ["g"],
    }
    assert claim_at(claims, "realm_access.roles") == ["o-approvers"]
    assert claim_at(claims, "resource_access.my.app.roles") == ["admin"]
    assert claim_at(claims, "https://example.com/roles") == ["auth0-role"]
    assert claim_at(claims, "groups") == ["g"]
    assert claim_at(claims, "realm_access.missing") is None
    assert claim_at(claims, "nothing") is None


def test_roles_come_from_a_nested_claim_of_a_bearer_token(app_with, manifest):
    m = with_sso(manifest, roles_claim="realm_access.roles", roles={"admin": ["/o-admins"]})
    with app_with(m) as live:
        key = RSAKey.generate_key(2048, parameters={"kid": "k"})
        live.app.state.guardrails.sso._jwks = (float("inf"), KeySet([key]))
        claims = _claims(live, realm_access={"roles": ["/o-admins"]})
        token = jwt.encode({"alg": "RS256", "kid": "k", "typ": "at+jwt"}, claims, key)
        me = httpx.get(f"{live.url}/", headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["roles"] == ["admin"]


def test_scopes_are_asked_for(app_with, manifest):
    m = with_sso(manifest, scopes=["openid", "email", "profile", "groups"])
    with app_with(m) as live:
        first = httpx.get(f"{live.url}/login", follow_redirects=False)
    assert httpx.URL(first.headers["location"]).params["scope"] == "openid email profile groups"


def test_token_endpoint_auth_method_is_used(app_with, manifest):
    m = with_sso(manifest, token_endpoint_auth_method="client_secret_post")
    with app_with(m) as live:
        sso = live.app.state.guardrails.sso
        assert sso.client.client_kwargs["token_endpoint_auth_method"] == "client_secret_post"


def _claims(live, **extra):
    import time

    now = int(time.time())
    return {
        "iss": live.runtime.sso_issuer,
        "aud": live.runtime.manifest.sso_client_id,
        "sub": "api-caller",
        "iat": now,
        "exp": now + 300,
        **extra,
    }


def test_audience_list(app_with, manifest):
    m = with_sso(manifest, audience=["api://approvals", "approvals-api"])
    with app_with(m) as live:
        key = RSAKey.generate_key(2048, parameters={"kid": "k"})
        live.app.state.guardrails.sso._jwks = (float("inf"), KeySet([key]))

        def call(aud):
            token = jwt.encode(
                {"alg": "RS256", "kid": "k", "typ": "at+jwt"}, _claims(live, aud=aud), key
            )
            return httpx.get(f"{live.url}/", headers={"authorization": f"Bearer {token}"})

        assert call("approvals-api").status_code == 200
        assert call(["other", "api://approvals"]).status_code == 200
        refused = call("guardrails-test-app")  # the client id is no longer an audience
    assert refused.status_code == 401
    assert "expected api://approvals or approvals-api" in refused.json()["detail"]


# ---------------------------------------------------------------------- the issuer
def test_discovery_naming_another_issuer_is_refused(app_with, manifest, idp):
    """The local provider's issuer has no trailing '/': configured with one, they differ."""
    with app_with(manifest, issuer=idp + "/") as live:
        page = httpx.get(f"{live.url}/login", headers={"accept": "text/html"})
        events = live.audit_events()
    assert page.status_code == 503
    assert "issuer mismatch" in page.text and f"{idp}/" in page.text
    assert events[-1]["action"] == "auth.login" and events[-1]["result"] == "failure"
    assert events[-1]["metadata"]["reason"] == "issuer mismatch"


# ---------------------------------------------------------------------- provider failures
def test_provider_down_is_a_503_page_and_audited(app_with, manifest):
    down = f"http://127.0.0.1:{free_port()}"
    with app_with(manifest, issuer=down) as live:
        page = httpx.get(f"{live.url}/login", headers={"accept": "text/html"})
        callback = httpx.get(
            f"{live.url}/auth/callback?code=x&state=y", headers={"accept": "text/html"}
        )
        api = httpx.get(f"{live.url}/", headers={"authorization": "Bearer x.y.z"})
        events = [e for e in live.audit_events() if e["action"] == "auth.login"]
    assert page.status_code == 503 and "issuer unreachable" in page.text
    assert down in page.text and "Sign-in unavailable" in page.text
    assert callback.status_code == 503
    assert api.status_code == 503 and "issuer unreachable" in api.json()["detail"]
    assert [e["metadata"]["step"] for e in events] == ["login", "callback", "jwks"]
    assert {e["result"] for e in events} == {"failure"}


def test_bad_discovery_document_is_a_503_page(app_with, manifest):
    def not_a_provider(environ, start_response):
        start_response("200 OK", [("content-type", "text/html")])
        return [b"<html>a web page</html>"]

    server = werkzeug.serving.make_server("127.0.0.1", 0, not_a_provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with app_with(manifest, issuer=f"http://127.0.0.1:{server.server_port}") as live:
            page = httpx.get(f"{live.url}/login", headers={"accept": "text/html"})
    finally:
        server.shutdown()
    assert page.status_code == 503 and "bad discovery document" in page.text


def _private_ca(tmp_path):
    """A private CA and a certificate for localhost signed by it (PEM files)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corp test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp_path / "ca.pem"


def test_provider_behind_a_private_ca(tmp_path, manifest, demo):
    ca_file = _private_ca(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    wsgi = idp_app(require_nonce=True, user_claims=[u.claims() for u in demo_users(manifest)])
    server = werkzeug.serving.make_server("localhost", 0, wsgi, threaded=True, ssl_context=context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    issuer = f"https://localhost:{server.server_port}"
    try:
        # the CA is missing from the app's trust settings: a 503 page says what to set
        (tmp_path / "a").mkdir()
        runtime = build_runtime(
            test_settings(tmp_path / "a", issuer, sso_client_secret="s"), manifest
        )
        with serve(tiny_app, runtime) as live:
            page = httpx.get(f"{live.url}/login", headers={"accept": "text/html"})
        assert page.status_code == 503 and "TLS verification failed" in page.text
        assert "sso.ca_file" in page.text and "SSL_CERT_FILE" in page.text
        # added through sso.ca_file: sign-in works
        (tmp_path / "b").mkdir()
        trusted = with_sso(manifest, ca_file=str(ca_file))
        runtime = build_runtime(
            test_settings(tmp_path / "b", issuer, sso_client_secret="s"), trusted
        )
        # (the browser trusts the company CA too: this client does)
        with (
            serve(tiny_app, runtime) as live,
            httpx.Client(
                follow_redirects=True,
                timeout=15,
                verify=ssl.create_default_context(cafile=str(ca_file)),
            ) as client,
        ):
            done = login(client, live, demo["admin"])
            assert done.json()["user"] == demo["admin"]
    finally:
        server.shutdown()


def test_nonce_mismatch_is_a_400_page_and_audited(guarded, demo):
    with guarded.client() as client:
        first = client.get(f"{guarded.url}/login", follow_redirects=False)
        authorize = httpx.URL(first.headers["location"])
        forged = authorize.copy_merge_params({"nonce": "not-the-apps-nonce"})
        answer = client.post(str(forged), data={"sub": demo["admin"]})
        assert answer.status_code == 400 and "Sign-in failed" in answer.text
        assert "nonce" in answer.text
        home = client.get(f"{guarded.url}/", follow_redirects=False)
        assert home.status_code == 303  # still signed out
    failure = [e for e in guarded.audit_events() if e["action"] == "auth.login"][-1]
    assert failure["result"] == "failure" and "nonce" in failure["metadata"]["description"]


def test_private_key_jwt_key_forms():
    rsa = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    assert private_key(rsa.as_pem(private=True).decode()).key_type == "RSA"
    from_jwk = private_key(json.dumps(rsa.as_dict(private=True)))
    assert from_jwk.kid == "k1" and from_jwk.is_private
    with pytest.raises(ValueError, match="public key"):
        private_key(rsa.as_pem(private=False).decode())
    with pytest.raises(ValueError, match="not an RSA, EC or OKP private key"):
        private_key("a shared secret")


def test_a_client_key_is_imported_once_per_text():
    """Each sign-in's callback asks for the client's private key (private_key_jwt): the same
    secret text gives the key imported the first time (no 50 ms RSA check on the event loop
    per sign-in); a rotated secret gives the new key."""
    first, rotated = (RSAKey.generate_key(2048) for _ in range(2))
    text = first.as_pem(private=True).decode()
    assert private_key(text) is private_key(text)
    assert private_key(rotated.as_pem(private=True).decode()).thumbprint() == rotated.thumbprint()
    assert private_key(text).thumbprint() == first.thumbprint()
