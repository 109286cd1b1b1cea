"""Yours to edit. What `make dev` (and the tests) need on a laptop: the demo incident service.

The service itself is the CoE's (guardrails.testing.serve_demo_incidents, in the testing extra:
never in a production image), so its fixes reach this app with the guardrails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from guardrails import Manifest
from guardrails.testing import serve_demo_incidents


@contextlib.contextmanager
def services(var_dir: Path, manifest: Manifest) -> Iterator[dict[str, str]]:
    """Run the demo incident service while the app runs, if the connector points at it."""
    spec = next(c for c in manifest.raw["connectors"] if c["name"] == "incidents")
    url = httpx.URL(spec["token_url"])
    if url.host not in ("127.0.0.1", "localhost"):
        yield {}  # a real incident API: nothing to start
        return
    with serve_demo_incidents(url.host, url.port, client_id=spec["client_id"]) as demo:
        print(f"  Demo incident service: {demo.url} (synthetic incidents)")
        yield {"INCIDENTS_CLIENT_SECRET": demo.client_secret}
