"""OpenTelemetry traces and metrics, and structured logs that carry trace ids.

Configured by the standard OTEL_* variables: with OTEL_EXPORTER_OTLP_ENDPOINT set, spans and
metrics go over OTLP/HTTP; OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER may be `console` or
`none` (the default when no endpoint is set); OTEL_SDK_DISABLED=true turns everything off.
Export runs in background threads, so a collector that is down never fails a request.
"""

from __future__ import annotations

import logging
import sys
import threading

import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from guardrails._version import __version__


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
    audit log) and handed to those in their constructors. `instrument(app)` wires FastAPI,
    `shutdown()` flushes.

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
            resource=resource, shutdown_on_exit=False
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

    def instrument(self, app) -> None:
        if not self.enabled:
            return
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            excluded_urls="healthz,livez,readyz,static/.*",
            # One server span per request: the ASGI "http send" / "http receive" child spans
            # (two or three per request) only repeated the server span's status code, and cost
            # a quarter of the instrumentation's time (make bench, docs/performance.md).
            exclude_spans=["receive", "send"],
        )

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
    renderer = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _access_fields],
            pass_foreign_args=True,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    for name in SERVER_LOGGERS:
        server_log = logging.getLogger(name)
        server_log.handlers = [handler]
        server_log.propagate = False
