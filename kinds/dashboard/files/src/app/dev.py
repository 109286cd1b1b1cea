"""Yours to edit. What `make dev` (and the tests) need on a laptop: the demo database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from app import demo_data
from guardrails import Manifest


@contextlib.contextmanager
def services(var_dir: Path, manifest: Manifest) -> Iterator[dict[str, str]]:
    """Create the synthetic demo database once; yield the variable the connector reads."""
    path = var_dir / "demo-reports.db"
    if not path.exists():
        demo_data.create(path)
        print(f"  Demo data: {path} (synthetic, made up for this demo)")
    yield {"DEMO_REPORTS_URL": f"sqlite:///{path.resolve()}"}
