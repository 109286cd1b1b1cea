"""The guardrails' own tests: the test kit's pytest plugin, the test manifest
(tests/data/microapp.yaml), and a tiny app made only of guardrails."""

from pathlib import Path

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from guardrails import User, audit, create_app, require_role, require_user
from guardrails.core.manifest import Manifest, load_manifest
from guardrails.testing import serve

# The test kit's fixtures, imported rather than loaded with `pytest_plugins`, so that these
# tests also run from the template repository's root (pytest_plugins works only in a rootdir
# conftest). Apps load the plugin: `pytest_plugins = ["guardrails.testing.plugin"]`.
from guardrails.testing.plugin import (
    app_env,
    app_manifest,
    demo,
    idp,
    live_app,
    runtime,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    """The test app's manifest (overrides the plugin's, which reads ./microapp.yaml)."""
    return load_manifest(DATA / "microapp.yaml")


def tiny_app(runtime):
    app = create_app(runtime=runtime)
    router = APIRouter()

    @router.get("/")
    def home(request: Request, user: User = Depends(require_user)):
        return JSONResponse(
            {
                "user": user.label,
                "id": user.id,
                "roles": sorted(user.roles),
                "via": user.via,
                "csrf": request.session.get("csrf"),
            }
        )

    @router.get("/admin-only")
    def admin_only(user: User = Depends(require_role("admin"))):
        return {"ok": True}

    @router.post("/change")
    def change(user: User = Depends(require_user)):
        audit.record("thing.change", resource=("thing", 1))
        return {"changed": True}

    app.include_router(router)
    return app


@pytest.fixture
def guarded(runtime):
    with serve(tiny_app, runtime) as live:
        yield live


@pytest.fixture
def non_admin(demo):
    return next(email for role, email in demo.items() if role != "admin")


@pytest.fixture(scope="session")
def postgres():
    """One throw-away PostgreSQL cluster for the whole run (skips, saying why, without one)."""
    from guardrails.testing.postgres import cluster_or_skip

    with cluster_or_skip() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_url():
    """One throw-away redis-server for the whole run (skips, saying why, without one)."""
    from guardrails.testing.redis import RedisServer, RedisUnavailable

    try:
        with RedisServer.start() as server:
            yield server.url
    except RedisUnavailable as exc:
        pytest.skip(f"Redis tests skipped: {exc}")


def libpq_time_limits(conn) -> dict[str, str]:
    """The values of guardrails' PG_TIME_LIMITS options that psycopg connection `conn` was
    made with (libpq's own record of its options)."""
    from guardrails.core.db import PG_TIME_LIMITS

    made = {o.keyword.decode(): (o.val or b"").decode() for o in conn.pgconn.info}
    return {key: made[key] for key in PG_TIME_LIMITS}
