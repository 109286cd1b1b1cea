"""Migrations: guardrails' own tables through Alembic, and a database that is behind."""

import pytest
from sqlalchemy import inspect, text

from guardrails.core import db, migrate
from guardrails.core.runtime import build_runtime
from guardrails.testing import serve, test_settings

from .conftest import tiny_app
from .test_audit import fresh_url


def test_guardrails_models_and_migrations_agree():
    assert migrate.differences([migrate.guardrails_project()]) == []


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_made_before_migrations_keeps_its_sessions(kind, tmp_path, request):
    url = fresh_url(kind, tmp_path, request)
    engine = db.make_engine(db.with_driver(url))
    with engine.begin() as conn:  # what create_all made in the previous template version
        conn.execute(
            text(
                "CREATE TABLE guardrails_session (id VARCHAR(64) PRIMARY KEY, data TEXT NOT NULL,"
                " expires_at FLOAT NOT NULL)"
            )
        )
        conn.execute(text("INSERT INTO guardrails_session VALUES ('s1', '{}', 1e12)"))
    project = migrate.guardrails_project()
    with pytest.raises(migrate.DatabaseBehind, match="make db-upgrade"):
        migrate.ensure_current(engine, [project], may_upgrade=False)
    migrate.upgrade(engine, [project])
    migrate.ensure_current(engine, [project], may_upgrade=False)  # now up to date
    assert "guardrails_audit_event" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM guardrails_session")).scalar() == "s1"
    engine.dispose()


def test_the_app_refuses_to_start_on_a_database_that_is_behind(tmp_path, idp, manifest, request):
    url = fresh_url("postgresql", tmp_path, request)  # not a laptop's SQLite: no auto-upgrade
    runtime = build_runtime(test_settings(tmp_path, idp, database_url=url), manifest)
    with pytest.raises(RuntimeError, match="did not start"), serve(tiny_app, runtime):
        pass
    migrate.upgrade(runtime.engine, [migrate.guardrails_project()])
    with serve(tiny_app, runtime) as live:  # migrated: it starts
        assert live.audit_events() == []
