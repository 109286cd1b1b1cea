"""The database goes away and comes back: requests fail meanwhile, nothing is half-written, and
the app serves again without a restart (pooled connections are checked before use)."""

import httpx
import pytest

from guardrails.core.runtime import build_runtime
from guardrails.testing import local_access_token, serve, test_settings
from guardrails.testing.postgres import PostgresCluster, PostgresUnavailable

from .conftest import tiny_app


def test_the_app_recovers_when_postgresql_comes_back(tmp_path, idp, manifest, demo):
    try:
        cluster_cm = PostgresCluster.start()
        cluster = cluster_cm.__enter__()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        runtime = build_runtime(test_settings(tmp_path, idp, database_url=cluster.url), manifest)
        from guardrails.core import migrate

        migrate.upgrade(runtime.engine, [migrate.guardrails_project()])
        token = local_access_token(idp, manifest.sso_client_id, demo["admin"])
        auth = {"authorization": f"Bearer {token}"}
        with serve(tiny_app, runtime) as live:
            assert httpx.post(f"{live.url}/change", headers=auth).status_code == 200
            cluster.stop_server()
            down = httpx.post(f"{live.url}/change", headers=auth, timeout=30)
            assert down.status_code >= 500  # refused while the database is away
            cluster.start_server()
            assert httpx.post(f"{live.url}/change", headers=auth).status_code == 200
            events = [e["action"] for e in live.audit_events()]
        assert events == ["thing.change", "thing.change"]  # none for the refused one
    finally:
        cluster_cm.__exit__(None, None, None)
