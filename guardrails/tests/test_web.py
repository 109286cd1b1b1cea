"""App-wide behaviour: headers, health, errors, stages."""

import dataclasses
import json

import httpx
import pytest

from guardrails import verify_audit
from guardrails.core.runtime import build_runtime
from guardrails.core.settings import ConfigError, Settings
from guardrails.testing import audit_unwritable, login, serve

from .conftest import tiny_app


def test_health_needs_no_sign_in(guarded, manifest):
    health = httpx.get(f"{guarded.url}/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["app_id"] == manifest.app_id
    assert body["guardrails_version"]


def test_security_headers_and_request_id(guarded):
    answer = httpx.get(f"{guarded.url}/healthz", headers={"x-request-id": "abc-123"})
    assert answer.headers["x-request-id"] == "abc-123"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    odd = httpx.get(f"{guarded.url}/healthz", headers={"x-request-id": "<script>"})
    assert odd.headers["x-request-id"] != "<script>"


def test_pages_redirect_to_sign_in_and_apis_answer_401(guarded):
    page = httpx.get(f"{guarded.url}/?a=1", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F%3Fa%3D1"
    both = httpx.get(f"{guarded.url}/?a=1&b=2", headers={"accept": "text/html"})
    assert both.headers["location"] == "/login?next=%2F%3Fa%3D1%26b%3D2"  # b is not lost
    api = httpx.get(f"{guarded.url}/")
    assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"


def test_unknown_page_is_a_friendly_404(guarded):
    answer = httpx.get(f"{guarded.url}/no-such-page", headers={"accept": "text/html"})
    assert answer.status_code == 404 and "Not found" in answer.text
    assert "There is no page at this address" in answer.text  # not the title twice


def test_action_is_refused_when_audit_cannot_be_written(runtime, demo):
    with serve(tiny_app, runtime) as live, live.client() as client:
        login(client, live, demo["admin"])
        token = client.get(f"{live.url}/").json()["csrf"]
        with audit_unwritable(runtime):
            answer = client.post(f"{live.url}/change", data={"csrf_token": token})
        assert answer.status_code == 503
        assert "could not be recorded in the audit log" in answer.text
        # space freed: the next action works, without a restart
        assert client.post(f"{live.url}/change", data={"csrf_token": token}).status_code == 200
    assert [e["action"] for e in live.audit_events()] == ["auth.login", "thing.change"]


def test_actions_go_on_while_the_audit_file_cannot_be_written(runtime, demo):
    with serve(tiny_app, runtime) as live, live.client() as client:
        login(client, live, demo["admin"])
        token = client.get(f"{live.url}/").json()["csrf"]
        live.audit_file.unlink()
        live.audit_file.mkdir()  # a directory where the file was: every write to it fails
        answer = client.post(f"{live.url}/change", data={"csrf_token": token})
        assert answer.status_code == 200  # the event is in the database; the file catches up
        state = runtime.audit_log.outbox.state["file"]
        assert state.failures >= 1 and state.backlog == 2  # the file (removed) holds neither
        live.audit_file.rmdir()
        assert runtime.audit_log.outbox.flush(timeout=5)
    lines = live.audit_file.read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["auth.login", "thing.change"]
    assert verify_audit(live.audit_file).ok


def test_production_refuses_laptop_fallbacks(tmp_path, manifest):
    raw = {**manifest.raw, "lifecycle": {**manifest.raw["lifecycle"], "stage": "production"}}
    prod = dataclasses.replace(manifest, raw=raw)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        base_url="http://app.local",
        sso_issuer="http://localhost:9400",
    )
    with pytest.raises(ConfigError) as refused:
        build_runtime(settings, prod)
    message = str(refused.value)
    for expected in (
        "SQLite",
        "local sign-in service",
        "not https",
        "MICROAPP_SESSION_KEY",
        "MICROAPP_SSO_CLIENT_SECRET",
    ):
        assert expected in message


def test_settings_come_from_the_environment():
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://db/app",
            "MICROAPP_BASE_URL": "https://app.example.com/",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        }
    )
    assert settings.database_url == "postgresql://db/app"
    assert settings.base_url == "https://app.example.com" and settings.secure_cookies
    assert settings.otel_traces_exporter == "otlp"
    assert settings.otlp_endpoint == "http://collector:4318"
    assert Settings.from_env({}).otel_traces_exporter == "none"


def test_sign_in_is_refused_when_it_cannot_be_audited(runtime, demo):
    with serve(tiny_app, runtime) as live, live.client() as client:
        form = client.get(f"{live.url}/login")
        with audit_unwritable(runtime):  # the audit chain cannot be written
            answer = client.post(str(form.url), data={"sub": demo["admin"]})
        assert answer.status_code == 503
        home = client.get(f"{live.url}/", follow_redirects=False)
        assert home.status_code == 303  # still signed out
        login(client, live, demo["admin"])  # space freed: sign-in works again, no restart
        assert client.get(f"{live.url}/", follow_redirects=False).status_code == 200


def test_an_unexpected_error_is_a_page_with_headers_and_request_id(runtime):
    """A bug nobody handled: not a bare text/plain 500 (issue 16, item 4), but the error page
    (JSON for API callers) with the security headers and the request id it shows."""

    def broken_app(rt):
        app = tiny_app(rt)

        @app.get("/broken")
        def broken():
            raise RuntimeError("a bug")

        return app

    with serve(broken_app, runtime) as live:
        page = httpx.get(f"{live.url}/broken", headers={"accept": "text/html"})
        api = httpx.get(f"{live.url}/broken", headers={"x-request-id": "trace-me"})
        live_probe = httpx.get(f"{live.url}/livez")
        ready = httpx.get(f"{live.url}/readyz")
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert page.headers["x-request-id"] in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert api.status_code == 500 and api.json()["request_id"] == "trace-me"
    assert api.headers["x-frame-options"] == "DENY"
    assert live_probe.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
