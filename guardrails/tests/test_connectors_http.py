"""The HTTP connector against a local OAuth2 token endpoint
and resource server (guardrails.testing.oauth): tokens, retries, rate limit, trace context and
the one-base-URL rule. The client secret comes from the local Vault API server."""

import dataclasses
import json
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guardrails import connector
from guardrails.connectors.registry import (
    ConnectorRateLimited,
    ConnectorRefused,
    ConnectorUnavailable,
    spec_problems,
)
from guardrails.core.runtime import bound, build_runtime, prepare_database
from guardrails.core.settings import VaultSettings
from guardrails.testing import audit_events, free_port, test_settings
from guardrails.testing.oauth import OAuthServer
from guardrails.testing.vault import VaultServer


@pytest.fixture
def api():
    with OAuthServer(token_lifetime=300) as server:
        yield server


@pytest.fixture
def vault(api):
    with VaultServer() as server:
        server.put("kv", "apps/leave-requests/incidents", {"client_secret": api.client_secret})
        yield server


def runtime_for(tmp_path, idp, manifest, vault, api, **overrides):
    spec = {
        "name": "incidents",
        "type": "http",
        "access": "read-write",
        "base_url": f"{api.url}/api",
        "auth": "oauth2-client-credentials",
        "token_url": api.token_url,
        "client_id": api.client_id,
        "scopes": ["incidents:read", "incidents:write"],
        "secret": "vault:kv/apps/leave-requests/incidents#client_secret",
        "timeout_seconds": 2,
        **overrides,
    }
    raw = {**manifest.raw, "connectors": [spec]}
    settings = test_settings(
        tmp_path, idp, vault=VaultSettings(addr=vault.url, token=vault.root_token())
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt = build_runtime(settings, dataclasses.replace(manifest, raw=raw), tracer_provider=provider)
    prepare_database(rt)
    rt.extras["spans"] = exporter
    return rt


@pytest.fixture
def rt(tmp_path, idp, manifest, vault, api):
    runtime = runtime_for(tmp_path, idp, manifest, vault, api)
    with bound(runtime):
        yield runtime
    runtime.close()


def test_oauth2_client_credentials_token_is_fetched_once_and_sent(rt, api):
    incidents = connector("incidents")
    for _ in range(3):
        answer = incidents.get("/incidents", params={"state": "open"})
        assert answer.status_code == 200 and answer.json()["path"] == "/api/incidents?state=open"
    assert api.token_requests == 1
    assert all(s.headers["authorization"].startswith("Bearer ") for s in api.seen)


def test_short_lived_tokens_are_refreshed_before_they_expire(rt, api):
    api.token_lifetime = 2  # refreshed in the last fifth of its life, at least 1 s before
    incidents = connector("incidents")
    incidents.get("/incidents")
    first = api.seen[-1].headers["authorization"]
    time.sleep(1.1)
    assert incidents.get("/incidents").status_code == 200  # never sent an expired token
    assert api.token_requests == 2 and api.seen[-1].headers["authorization"] != first


def test_a_revoked_token_is_replaced_once(rt, api):
    incidents = connector("incidents")
    incidents.get("/incidents")
    api.revoke_all()
    assert incidents.get("/incidents").status_code == 200
    assert api.token_requests == 2


def test_wrong_client_secret_is_a_clear_failure(rt, api, vault):
    vault.put("kv", "apps/leave-requests/incidents", {"client_secret": "not-the-secret"})
    with pytest.raises(ConnectorUnavailable, match="refused the client credentials"):
        connector("incidents").get("/incidents")


def test_only_the_declared_base_url_is_reachable(rt, api):
    incidents = connector("incidents")
    elsewhere = f"http://127.0.0.1:{free_port()}/api/incidents"
    for target in (
        elsewhere,
        api.url.replace("127.0.0.1", "localhost") + "/api/x",
        f"{api.url}/oauth/token",
        "../admin",
        "/%2e%2e/admin",
    ):
        with pytest.raises(ConnectorRefused, match="may only call"):
            incidents.get(target)
    for encoded in ("/api/..%2fadmin", "/api/%5Cadmin"):  # a server might decode them again
        with pytest.raises(ConnectorRefused, match="may only call"):
            incidents.get(encoded)
    with pytest.raises(ConnectorRefused, match="not a valid URL"):
        incidents.get("/api/incidents/\t")  # a refusal, not httpx.InvalidURL
    assert api.seen == []  # nothing was sent
    refused = [e for e in audit_events(rt) if e["action"] == "connector.refused"]
    assert len(refused) == 8 and {e["result"] for e in refused} == {"denied"}
    assert incidents.get(f"{api.url}/api/incidents").status_code == 200  # absolute but inside


@pytest.mark.parametrize(
    ("base_url", "refused"),
    [
        ("https://incidents.example.com/api", False),
        ("http://127.0.0.1:9500/api", False),  # this machine: a sidecar
        ("http://localhost:9500/api", False),
        ("http://localhost.evil.example/api", True),  # not this machine, despite the prefix
        ("http://127.0.0.1.evil.example/api", True),
        ("http://incidents.example.com/api", True),
    ],
)
def test_production_wants_https_except_to_this_machine(manifest, base_url, refused):
    raw = {
        **manifest.raw,
        "lifecycle": {**manifest.raw["lifecycle"], "stage": "production"},
        "connectors": [{"name": "x", "type": "http", "access": "read-only", "base_url": base_url}],
    }
    problems = spec_problems(dataclasses.replace(manifest, raw=raw))
    assert bool(problems) == refused, problems


def test_read_only_connector_sends_only_safe_methods(tmp_path, idp, manifest, vault, api):
    ro = runtime_for(tmp_path, idp, manifest, vault, api, access="read-only")
    with bound(ro):
        with pytest.raises(ConnectorRefused, match="read-only"):
            connector("incidents").post("/incidents/1/ack", json={"note": "x"})
        assert connector("incidents").get("/incidents").status_code == 200
        assert [e["result"] for e in audit_events(ro)] == ["denied"]
    ro.close()


def test_idempotent_calls_are_retried_with_backoff(rt, api):
    api.fail_next(503, 2)
    started = time.monotonic()
    assert connector("incidents").get("/incidents").status_code == 200
    assert len(api.seen) == 3 and time.monotonic() - started >= 0.25  # 0.1-0.2 s, 0.2-0.4 s
    (span,) = [s for s in rt.extras["spans"].get_finished_spans() if s.name.endswith("GET")]
    assert span.attributes["microapp.connector.attempts"] == 3
    api.fail_next(503, 1)
    assert connector("incidents").post("/incidents", json={}).status_code == 503  # not retried
    api.fail_next(503, 5)
    assert connector("incidents").get("/incidents").status_code == 503  # gave up after 2 retries


def test_timeouts_and_unreachable_apis(tmp_path, idp, manifest, vault, api):
    rt = runtime_for(tmp_path, idp, manifest, vault, api, timeout_seconds=0.3, retries=1)
    with bound(rt):
        connector("incidents").get("/warm-up")  # token fetched
        api.delay = 1.0
        with pytest.raises(ConnectorUnavailable, match="timed out"):
            connector("incidents").get("/incidents")
        assert len(api.seen) == 3  # warm-up, then the first try and one retry
    rt.close()
    api.delay = 0
    dead = runtime_for(
        tmp_path, idp, manifest, vault, api, base_url=f"http://127.0.0.1:{free_port()}/api"
    )
    with bound(dead), pytest.raises(ConnectorUnavailable, match="cannot be reached"):
        connector("incidents").get("/incidents")
    dead.close()


def test_rate_limit_per_connector(tmp_path, idp, manifest, vault, api):
    rt = runtime_for(tmp_path, idp, manifest, vault, api, rate_limit_per_minute=3)
    with bound(rt):
        for _ in range(3):
            connector("incidents").get("/incidents")
        with pytest.raises(ConnectorRateLimited, match="app-wide budget") as refused:
            connector("incidents").get("/incidents")
    assert refused.value.status == 503 and 1 <= refused.value.retry_after <= 60
    assert "3 calls a minute, shared by all its users" in str(refused.value)
    assert len(api.seen) == 3
    rt.close()


def test_trace_context_reaches_the_api(rt, api):
    connector("incidents").get("/incidents")
    spans = rt.extras["spans"].get_finished_spans()
    (call,) = [s for s in spans if s.name == "connector incidents GET"]
    assert call.attributes["microapp.connector.name"] == "incidents"
    assert call.attributes["http.response.status_code"] == 200
    assert any(s.name == "connector incidents token" for s in spans)
    version, trace_id, span_id, flags = api.seen[-1].headers["traceparent"].split("-")
    assert trace_id == format(call.context.trace_id, "032x")
    assert span_id == format(call.context.span_id, "016x")
    secret = api.client_secret
    assert secret not in json.dumps([s.to_json() for s in spans])
