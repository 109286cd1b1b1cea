"""The database goes away and comes back: requests fail meanwhile, nothing is half-written, and
the app serves again without a restart (pooled connections are checked before use)."""

import contextlib

import httpx
import pytest

from guardrails.core.runtime import build_runtime
from guardrails.testing import local_access_token, login, serve, test_settings
from guardrails.testing.postgres import PostgresCluster, PostgresUnavailable

from .conftest import tiny_app


@contextlib.contextmanager
def served_on_a_cluster_of_its_own(tmp_path, idp, manifest):
    """(the live app, its PostgreSQL cluster), the cluster's server stoppable by the test."""
    try:
        cluster_cm = PostgresCluster.start()
        cluster = cluster_cm.__enter__()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        runtime = build_runtime(test_settings(tmp_path, idp, database_url=cluster.url), manifest)
        from guardrails.core import migrate

        migrate.upgrade(runtime.engine, [migrate.guardrails_project()])
        with serve(tiny_app, runtime) as live:
            yield live, cluster
    finally:
        cluster_cm.__exit__(None, None, None)


def test_the_app_recovers_when_postgresql_comes_back(tmp_path, idp, manifest, demo):
    token = local_access_token(idp, manifest.sso_client_id, demo["admin"])
    auth = {"authorization": f"Bearer {token}"}
    with served_on_a_cluster_of_its_own(tmp_path, idp, manifest) as (live, cluster):
        assert httpx.post(f"{live.url}/change", headers=auth).status_code == 200
        cluster.stop_server()
        down = httpx.post(f"{live.url}/change", headers=auth, timeout=30)
        assert down.status_code >= 500  # refused while the database is away
        cluster.start_server()
        assert httpx.post(f"{live.url}/change", headers=auth).status_code == 200
        events = [e["action"] for e in live.audit_events()]
    assert events == ["thing.change", "thing.change"]  # none for the refused one


def test_a_signed_in_browser_survives_a_postgresql_restart(tmp_path, idp, manifest, demo):
    """The session is read on the event loop's own connection: a restart breaks it, the page
    says the database is away (503, not a 500), and the same session works once it is back."""
    with (
        served_on_a_cluster_of_its_own(tmp_path, idp, manifest) as (live, cluster),
        live.client() as browser,
    ):
        login(browser, live, demo["admin"], next_path="/healthz")
        before = browser.get(f"{live.url}/").json()
        assert before["via"] == "session"
        cluster.stop_server()
        down = browser.get(f"{live.url}/", timeout=30)
        assert down.status_code == 503 and down.headers["retry-after"]
        cluster.start_server()
        back = browser.get(f"{live.url}/")
        assert back.status_code == 200 and back.json()["id"] == before["id"]  # same session
