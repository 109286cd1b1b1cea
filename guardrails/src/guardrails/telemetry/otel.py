"""OpenTelemetry traces and metrics, and structured logs that carry trace ids.

Configured by the standard OTEL_* variables: with OTEL_EXPORTER_OTLP_ENDPOINT set, spans and
metrics go over OTLP/HTTP; OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER may be `console` or
`none` (the default when no endpoint is set); OTEL_SDK_DISABLED=true turns everything off.
Export runs in background threads, so a collector that is down never fails a request.

Traces are sampled at the head: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG with the standard
names, and when they are unset `parentbased_traceidratio` at DEFAULT_TRACE_RATIO: a request
that arrives with a W3C `traceparent` follows its caller's decision (a trace started upstream
stays whole), other requests start a trace DEFAULT_TRACE_RATIO of the time. Metrics and the
trace ids in log lines do not depend on sampling: every request is counted and logged.

`HttpServer` is the request instrumentation of the app's one middleware (guardrails.web.app):
a SERVER span per request (W3C trace context from the caller) and the standard metric
`http.server.request.duration`, both with the HTTP semantic conventions' attributes. It is
placed by hand instead of OpenTelemetry's FastAPI/ASGI instrumentation or FastAPI's own
telemetry: docs/explanations/decisions/0010-request-telemetry.md has the measurements.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, StatusCode

from guardrails._version import __version__

DEFAULT_TRACE_RATIO = 0.1  # traces started here when OTEL_TRACES_SAMPLER is unset (see above)
_log = structlog.get_logger("guardrails.telemetry")


def sampler(name: str | None, arg: str | None) -> Sampler:
    """The head sampler for OTEL_TRACES_SAMPLER `name` and OTEL_TRACES_SAMPLER_ARG `arg`, as
    the SDK reads them; unset: parent-based, DEFAULT_TRACE_RATIO of the new traces."""
    if not name:
        return ParentBasedTraceIdRatio(DEFAULT_TRACE_RATIO)
    fixed = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "parentbased_always_on": DEFAULT_ON,
        "parentbased_always_off": DEFAULT_OFF,
    }
    if name in fixed:
        return fixed[name]
    ratio = {"traceidratio": TraceIdRatioBased, "parentbased_traceidratio": ParentBasedTraceIdRatio}
    if name in ratio:
        try:
            rate = float(arg) if arg else 1.0
            if not 0.0 <= rate <= 1.0:
                raise ValueError(rate)
        except ValueError:
            _log.warning("OTEL_TRACES_SAMPLER_ARG is not a ratio in [0, 1]; using 1.0", arg=arg)
            rate = 1.0
        return ratio[name](rate)
    _log.warning(
        "OTEL_TRACES_SAMPLER is not a sampler this app knows; using the default",
        sampler=name,
        default=f"parentbased_traceidratio {DEFAULT_TRACE_RATIO}",
    )
    return ParentBasedTraceIdRatio(DEFAULT_TRACE_RATIO)


def resource_for(manifest, app_version: str) -> Resource:
    """Resource attributes that let the fleet be read from telemetry alone."""
    return Resource.create(
        {
            "service.name": manifest.app_id,
            "service.version": app_version,
            "deployment.environment.name": manifest.stage,
            "microapp.kind": manifest.kind,
            "microapp.owner": manifest.owner,
            "microapp.team": manifest.team,
            "microapp.risk_tier": manifest.risk_tier,
            "microapp.guardrails.version": __version__,
        }
    )


def _endpoint(base: str | None, signal: str) -> str | None:
    # Per the OTLP spec, the base endpoint gets /v1/<signal>; signal-specific variables
    # (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ...) are read by the exporter itself when base is unset.
    return f"{base}/v1/{signal}" if base else None


def _span_exporter(name: str, base: str | None):
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=_endpoint(base, "traces"), timeout=5)
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    return None


def _metric_exporter(name: str, base: str | None):
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=_endpoint(base, "metrics"), timeout=5)
    if name == "console":
        return ConsoleMetricExporter(out=sys.stderr)
    return None


class Telemetry:
    """Providers for one app, built before what they trace (secrets, Vault, connectors, the
    audit log) and handed to those in their constructors. `http_server()` is the request
    instrumentation that the web middleware places, `shutdown()` flushes.

    With `export=False` (commands) no exporter is started and the global providers are left
    alone, whatever the OTEL_* settings say. `tracer_provider` replaces the one built from the
    settings (tests pass one with an in-memory exporter).
    """

    def __init__(
        self,
        settings,
        manifest,
        app_version: str,
        *,
        export: bool = True,
        tracer_provider: TracerProvider | None = None,
    ):
        self.enabled = export and not settings.otel_disabled
        self.shutdown_timeout = settings.otel_shutdown_timeout
        resource = resource_for(manifest, app_version)
        # shutdown_on_exit=False: the SDK's own exit hook would flush again, without a bound
        self.tracer_provider = tracer_provider or TracerProvider(
            resource=resource,
            sampler=sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg),
            shutdown_on_exit=False,
        )
        span_exporter = (
            _span_exporter(settings.otel_traces_exporter, settings.otlp_endpoint)
            if self.enabled and tracer_provider is None
            else None
        )
        if span_exporter is not None:
            self.tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        readers = []
        metric_exporter = (
            _metric_exporter(settings.otel_metrics_exporter, settings.otlp_endpoint)
            if self.enabled
            else None
        )
        if metric_exporter is not None:
            readers.append(PeriodicExportingMetricReader(metric_exporter))
        self.meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, shutdown_on_exit=False
        )
        self.tracer = self.tracer_provider.get_tracer("guardrails", __version__)
        self.meter = self.meter_provider.get_meter("guardrails", __version__)
        self.resource = resource
        self.audit_events = self.meter.create_counter(
            "microapp.audit.events", description="Audit events written, by action and result"
        )
        self.security_refusals = self.meter.create_counter(
            "microapp.security.refused",
            description="Refused attempts (forged tokens, tampered cookies, ...), by reason",
        )
        self.delivery_failures = self.meter.create_counter(
            "microapp.audit.delivery.failures",
            description="Audit batches a sink did not accept (retried with backoff), by sink",
        )
        self._chain_events = 0
        self.meter.create_observable_gauge(
            "microapp.audit.chain.events",
            callbacks=[self._observe_chain],
            description="Events in the audit chain at the last checkpoint",
        )
        if self.enabled and not isinstance(trace.get_tracer_provider(), TracerProvider):
            trace.set_tracer_provider(self.tracer_provider)  # for libraries that use the global
            metrics.set_meter_provider(self.meter_provider)

    def count_audit_event(self, event: dict) -> None:
        """An AuditLog observer: the `microapp.audit.events` counter."""
        self.audit_events.add(1, {"action": event["action"], "result": event["result"]})

    def count_delivery_failure(self, sink: str) -> None:
        """An Outbox `on_failure` hook: the `microapp.audit.delivery.failures` counter."""
        self.delivery_failures.add(1, {"sink": sink})

    def audit_checkpoint(self, events: int, head_hash: str) -> None:
        """An Outbox `checkpoint` hook: the chain's length and head, outside the database."""
        self._chain_events = events
        structlog.get_logger("guardrails.auditing").info(
            "audit.checkpoint", events=events, head_hash=head_hash
        )

    def _observe_chain(self, _options):
        yield metrics.Observation(self._chain_events)

    def watch_outbox(self, outbox) -> None:
        """Gauges of the audit outbox: events not yet delivered and their age, by sink."""

        def sizes(_options):
            for name, state in outbox.state.items():
                yield metrics.Observation(state.backlog, {"sink": name})

        def lags(_options):
            for name, state in outbox.state.items():
                yield metrics.Observation(state.lag, {"sink": name})

        self.meter.create_observable_gauge(
            "microapp.audit.outbox.size",
            callbacks=[sizes],
            description="Audit events not yet delivered, by sink",
        )
        self.meter.create_observable_gauge(
            "microapp.audit.delivery.lag",
            callbacks=[lags],
            unit="s",
            description="Age of the oldest audit event not yet delivered, by sink",
        )

    def resource_attributes(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.resource.attributes.items()}

    def http_server(self) -> HttpServer | None:
        """The request instrumentation for the app's middleware; None when telemetry is off."""
        if not self.enabled:
            return None
        return HttpServer(self.tracer, self.meter)

    def shutdown(self) -> None:
        """Flush and stop, waiting at most `otel_shutdown_timeout` seconds: a collector that is
        unreachable or never answers must not hold up a restart (the exporters' own retries
        can take far longer). What is not sent by then is dropped, and a line says so."""

        def stop() -> None:
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown()

        flushing = threading.Thread(target=stop, name="otel-shutdown", daemon=True)
        flushing.start()
        flushing.join(self.shutdown_timeout)
        if flushing.is_alive():
            structlog.get_logger("guardrails.telemetry").warning(
                "telemetry not flushed at shutdown: the collector did not answer in time",
                timeout_seconds=self.shutdown_timeout,
            )


# https://opentelemetry.io/docs/specs/semconv/http/http-spans/ (stable HTTP conventions)
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
REDACTED_QUERY = frozenset({"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "sig"})


class _AsgiHeaders(Getter):
    """W3C trace context (and whatever OTEL_PROPAGATORS names) from the raw ASGI headers."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        found = [value.decode("latin-1") for header, value in carrier if header == name]
        return found or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_HEADERS = _AsgiHeaders()


class HttpRequest:
    """One request's span, context token and start time (see HttpServer)."""

    __slots__ = ("attributes", "name", "span", "started", "token")

    def __init__(self, span, token, name: str, attributes: dict[str, Any]):
        self.span, self.token, self.name = span, token, name
        self.attributes = attributes
        self.started = time.perf_counter()


class HttpServer:
    """The SERVER span and `http.server.request.duration` of each HTTP request.

    `start(scope)` before the app runs, `end(request, scope, status, error)` after: the route
    template (`http.route`) is known only once the router has matched (scope["route"]).
    """

    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter):
        self.tracer = tracer
        self.duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def start(self, scope: dict[str, Any]) -> HttpRequest:
        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = "_OTHER"
        metric = {"http.request.method": method, "url.scheme": scope.get("scheme", "http")}
        if scope.get("http_version"):
            metric["network.protocol.version"] = scope["http_version"]
        headers = scope["headers"]
        parent = propagate.extract(headers, getter=_HEADERS)
        name = "HTTP" if method == "_OTHER" else method
        span = self.tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=metric,
        )
        if span.is_recording():  # the span's own attributes only for sampled requests
            attributes: dict[str, Any] = {"url.path": scope["path"]}
            if method != scope["method"]:
                attributes["http.request.method_original"] = scope["method"]
            if scope.get("query_string"):
                attributes["url.query"] = _query(scope["query_string"])
            client = scope.get("client")
            if client:
                attributes["client.address"] = client[0]
            for header, value in headers:
                if header == b"host":
                    host, _, port = value.decode("latin-1").rpartition(":")
                    if not host or not port.isdigit():
                        host, port = value.decode("latin-1"), ""
                    attributes["server.address"] = host
                    if port:
                        attributes["server.port"] = int(port)
                elif header == b"user-agent":
                    attributes["user_agent.original"] = value.decode("latin-1")
            span.set_attributes(attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return HttpRequest(span, token, name, metric)

    def end(
        self,
        request: HttpRequest,
        scope: dict[str, Any],
        status: int | None,
        error: BaseException | None = None,
    ) -> None:
        attributes = request.attributes
        route = route_template(scope)
        if route:
            attributes["http.route"] = route
        if status is not None:
            attributes["http.response.status_code"] = status
        failed = error is not None or status is None or status >= 500
        if failed:
            attributes["error.type"] = (
                type(error).__qualname__ if error is not None else str(status or "incomplete")
            )
        span = request.span
        if span.is_recording():
            span.set_attributes(attributes)
            if route:
                span.update_name(f"{request.name} {route}")
            if error is not None:
                span.record_exception(error)
            if failed:
                span.set_status(StatusCode.ERROR)
        self.duration.record(time.perf_counter() - request.started, attributes)
        span.end()
        otel_context.detach(request.token)


def route_template(scope: dict[str, Any]) -> str | None:
    """The matched route's template (`/items/{item_id}`), known once the router has run.

    FastAPI 0.165 keeps the template with the prefix of `include_router(prefix=...)` in its
    scope entry "fastapi" (what its own telemetry reads); Starlette's scope["route"] holds the
    route, whose path lacks that prefix, so it is the fall-back."""
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        template = getattr(fastapi_scope.get("effective_route_context"), "path_format", None)
        if template:
            return template
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None)


def _query(raw: bytes) -> str:
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    if not any(key in REDACTED_QUERY for key, _ in pairs):
        return raw.decode("latin-1")
    return urlencode([(k, "REDACTED" if k in REDACTED_QUERY else v) for k, v in pairs])


def _add_trace_ids(_logger, _name, event_dict):
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


class _CurrentStderr:
    """Whatever sys.stderr is when a line is written (not when logging was configured): a
    stream that was swapped out and closed since (a test's capture) never fails a request."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# The servers' own loggers (standard library logging): routed through the same processors,
# so with JSON on, every line on stderr is one JSON object with the request and trace ids.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _access_fields(_logger, _name, event_dict):
    """uvicorn's access line as fields: client, method, path, http_version, status."""
    record = event_dict.get("_record")
    args = event_dict.pop("positional_args", ())  # the record's arguments (pass_foreign_args)
    access = record is not None and record.name == "uvicorn.access"
    if access and isinstance(args, tuple) and len(args) == 5:
        names = ("client", "method", "path", "http_version", "status")
        event_dict.update(zip(names, args, strict=True))
    return event_dict


def configure_logging(log_format: str = "console") -> None:
    """structlog for app and guardrails logs: JSON in production, readable on a laptop.

    uvicorn's access and error lines go through the same processors and renderer (call this
    after uvicorn has set up its logging, i.e. from the app factory, as create_app does)."""
    # A failure's traceback is logged as plain text (the JSON object's "exception" field, or
    # under the console line), never with its frames' local variables: they hold tokens,
    # secrets and people's data. Left to itself, structlog's console output would use rich's
    # traceback, locals included, wherever rich is installed (many tools bring it), at seconds
    # per traceback; and JSON without format_exc_info logged `"exc_info": true`, no traceback.
    render = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if log_format == "json"
        else [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]
    structlog.configure(
        processors=[*shared, *render],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _access_fields],
            pass_foreign_args=True,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
        )
    )
    for name in SERVER_LOGGERS:
        server_log = logging.getLogger(name)
        server_log.handlers = [handler]
        server_log.propagate = False
