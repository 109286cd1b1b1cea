"""One request context (guardrails.core.context), and a Runtime wired in its constructors."""

import httpx
from fastapi import APIRouter, Request
from opentelemetry.sdk.trace import TracerProvider

from guardrails import audit, create_app, runtime
from guardrails.core import context
from guardrails.core.context import Actor, RequestInfo
from guardrails.core.runtime import bound, build_runtime, prepare_database
from guardrails.core.settings import VaultSettings
from guardrails.testing import serve, test_settings


def test_bound_makes_the_runtime_current_and_unbinds(tmp_path, idp, manifest):
    rt = build_runtime(test_settings(tmp_path, idp), manifest)
    prepare_database(rt)
    assert context.current_runtime() is None
    with bound(rt):
        assert context.current_runtime() is rt and context.current_request() is None
        audit.record("thing.change", resource=("thing", 1))
        token = context.set_request(RequestInfo(request_id="r1"))
        context.set_actor(Actor(id="a@example.com", roles=("admin",)))
        event = audit.record("thing.change")
        context.unbind(token)
        assert context.current_runtime() is rt and context.current_request() is None
    assert context.current_runtime() is None
    rt.close()
    assert event["request_id"] == "r1" and event["actor"] == {
        "id": "a@example.com",
        "roles": ["admin"],
    }


def test_a_request_binds_its_app_and_its_info_once(tmp_path, idp, manifest):
    rt = build_runtime(test_settings(tmp_path, idp), manifest)

    def factory(runtime):
        app = create_app(runtime=runtime)
        router = APIRouter()

        @router.get("/context")
        async def show(request: Request):
            ctx = context.current()
            return {
                "same_runtime": ctx.runtime is request.app.state.guardrails.runtime,
                "request_id": ctx.request.request_id,
            }

        app.include_router(router)
        return app

    with serve(factory, rt) as live:
        answer = httpx.get(f"{live.url}/context", headers={"x-request-id": "req-1"}).json()
    assert answer == {"same_runtime": True, "request_id": "req-1"}
    assert context.current_runtime() is None


def test_tracer_and_audit_counter_are_given_in_constructors(tmp_path, idp, manifest):
    provider = TracerProvider()
    vault = VaultSettings(addr="http://127.0.0.1:9", token="t")  # built, never called here
    settings = test_settings(tmp_path, idp, vault=vault)
    rt = build_runtime(settings, manifest, tracer_provider=provider, defer_secrets=True)
    tracer = rt.telemetry.tracer
    assert rt.telemetry.tracer_provider is provider
    assert rt.secrets.tracer is tracer and rt.secrets.vault.tracer is tracer
    assert rt.connectors.tracer is tracer
    assert rt.audit_log.observers == [rt.telemetry.count_audit_event]
    app = create_app(runtime=rt)  # the web app uses them as they are
    gr = app.state.guardrails
    assert gr.telemetry is rt.telemetry and rt.secrets.tracer is tracer
    assert rt.audit_log.observers == [rt.telemetry.count_audit_event]
    rt.close()


def test_commands_start_no_exporter(tmp_path, idp, manifest):
    settings = test_settings(
        tmp_path,
        idp,
        otel_disabled=False,
        otel_traces_exporter="otlp",
        otel_metrics_exporter="otlp",
        otlp_endpoint="http://127.0.0.1:9",
    )
    with runtime(settings, manifest) as rt:
        assert not rt.telemetry.enabled
        assert not rt.telemetry.meter_provider._all_metric_readers  # noqa: SLF001
        processors = rt.telemetry.tracer_provider._active_span_processor._span_processors  # noqa: SLF001
        assert not processors
