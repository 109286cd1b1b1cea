"""Yours to edit. What `make dev` (and the tests) need on a laptop: the demo incident service."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from app import demo_service
from guardrails import Manifest


def _demo_address(manifest: Manifest) -> tuple[str, int, str]:
    """Host, port and client id of the demo service, from the `incidents` connector."""
    spec = next(c for c in manifest.raw["connectors"] if c["name"] == "incidents")
    url = httpx.URL(spec["token_url"])
    return url.host, url.port, spec["client_id"]


@contextlib.contextmanager
def services(var_dir: Path, manifest: Manifest) -> Iterator[dict[str, str]]:
    """Run the demo incident service while the app runs, if the connector points at it."""
    host, port, client_id = _demo_address(manifest)
    env = {"INCIDENTS_CLIENT_SECRET": demo_service.DEMO_CLIENT_SECRET}
    if host not in ("127.0.0.1", "localhost"):
        yield {}  # a real incident API: nothing to start
        return
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise SystemExit(
                f"Port {port} is in use: stop the other demo incident service "
                "(another `make dev`?) and try again, or move it: change the port in the "
                "`incidents` connector's base_url and token_url in microapp.yaml."
            )
    server = uvicorn.Server(
        uvicorn.Config(demo_service.build(client_id), host=host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="demo-incidents", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit(f"The demo incident service could not start on port {port}.")
        time.sleep(0.05)
    print(f"  Demo incident service: http://{host}:{port} (synthetic incidents)")
    try:
        yield env
    finally:
        server.should_exit = True
        thread.join(timeout=5)
