"""The pytest plugin of guardrails.testing: the app's tests/conftest.py loads it with
`pytest_plugins = ["guardrails.testing.plugin"]`.

Fixtures: manifest (microapp.yaml, or MICROAPP_MANIFEST), idp (the local OIDC provider; its
issuer URL), demo (role -> demo user e-mail), app_manifest (local demo services moved to free
ports), app_env (what the owner's app/dev.py starts), runtime, live_app (app.main:build served).

Each test's app gets a fresh SQLite database, migrated. With MICROAPP_TEST_DATABASE_URL set to
a PostgreSQL server (`postgresql://user:password@host:port/postgres`), each test gets a fresh
database on that server instead, migrated the same way: the same tests on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from guardrails.core.manifest import Manifest, load_manifest
from guardrails.core.runtime import Runtime, build_runtime, prepare_database
from guardrails.core.settings import Settings
from guardrails.testing import LiveApp, serve, test_settings, with_free_local_ports
from guardrails.testing.devserver import app_services, demo_users, run_idp


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    """The app's microapp.yaml (MICROAPP_MANIFEST names another file)."""
    return load_manifest(Settings.from_env().manifest_path)


@pytest.fixture(scope="session")
def idp(manifest: Manifest) -> Iterator[str]:
    """The local OIDC provider with the manifest's demo users; yields the issuer URL."""
    with run_idp(manifest) as issuer:
        yield issuer


@pytest.fixture
def demo(manifest: Manifest) -> dict[str, str]:
    """Role -> demo user e-mail."""
    return {u.role: u.email for u in demo_users(manifest)}


@pytest.fixture(scope="session")
def app_manifest(manifest: Manifest) -> Manifest:
    """The manifest the app runs with in tests: `manifest`, local demo services on free ports."""
    return with_free_local_ports(manifest)


@pytest.fixture
def app_env(tmp_path: Path, app_manifest: Manifest) -> Iterator[dict[str, str]]:
    """What the app's `app/dev.py` starts for it on a laptop (demo data, demo APIs), if any."""
    with app_services(tmp_path / "var", app_manifest) as env:
        yield env


@pytest.fixture
def runtime(tmp_path: Path, idp: str, app_manifest: Manifest, app_env: dict[str, str]) -> Runtime:
    overrides = {}
    server = Settings.from_env().environ.get("MICROAPP_TEST_DATABASE_URL")
    if server:
        overrides["database_url"] = fresh_database(server)
    rt = build_runtime(test_settings(tmp_path, idp, environ=app_env, **overrides), app_manifest)
    if server:
        from guardrails.core import migrate

        projects = [migrate.guardrails_project(), migrate.app_project(rt.settings.migrations_path)]
        migrate.upgrade(rt.engine, projects)
    prepare_database(rt)  # a throw-away database: the app's and guardrails' tables, up to date
    return rt


def fresh_database(server_url: str) -> str:
    """A new, empty database on the PostgreSQL server at `server_url`; returns its URL."""
    import uuid

    from sqlalchemy import create_engine, text

    from guardrails.core import db

    name = "test_" + uuid.uuid4().hex[:16]
    admin = create_engine(db.with_driver(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def live_app(runtime: Runtime) -> Iterator[LiveApp]:
    """The owner's app (app.main:build) served for real."""
    from app.main import build

    with serve(build, runtime) as live:
        yield live
