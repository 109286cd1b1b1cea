"""Telemetry: OpenTelemetry traces and metrics, structlog logging."""
