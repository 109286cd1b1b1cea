"""Yours to edit. What `make dev` (and the tests) need on a laptop: the demo incident service."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
import yaml

from app import demo_service


def _demo_address() -> tuple[str, int, str]:
    """Host, port and client id of the demo service, from the connector in microapp.yaml."""
    manifest = yaml.safe_load(Path("microapp.yaml").read_text("utf-8"))
    spec = next(c for c in manifest["connectors"] if c["name"] == "incidents")
    host_port = spec["token_url"].split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    return host, int(port), spec["client_id"]


@contextlib.contextmanager
def services(var_dir: Path) -> Iterator[dict[str, str]]:
    """Run the demo incident service while the app runs, if the connector points at it."""
    host, port, client_id = _demo_address()
    env = {"INCIDENTS_CLIENT_SECRET": demo_service.DEMO_CLIENT_SECRET}
    if host not in ("127.0.0.1", "localhost"):
        yield {}  # a real incident API: nothing to start
        return
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise SystemExit(
                f"Port {port} is in use: stop the other demo incident service "
                "(another `make dev`?) and try again."
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
