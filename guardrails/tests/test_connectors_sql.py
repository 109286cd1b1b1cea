"""The SQL connector on real SQLite and PostgreSQL databases.

PostgreSQL runs as a throw-away cluster (guardrails.testing.postgres); those tests skip, saying
why, when no PostgreSQL binaries are installed. Read-only is enforced by the database, not by
guessing at the SQL: even the PostgreSQL superuser cannot write through a read-only connector.
"""

import dataclasses
import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import column, create_engine, select, table, text

from guardrails import connector
from guardrails.connectors.registry import (
    ConnectorNotDeclared,
    ConnectorRefused,
    ConnectorUnavailable,
    QueryRefused,
)
from guardrails.connectors.sql import check_sql
from guardrails.core.db import PG_TIME_LIMITS
from guardrails.core.runtime import bound, build_runtime, prepare_database
from guardrails.testing import audit_events, test_settings
from guardrails.testing.postgres import PostgresUnavailable

from .conftest import libpq_time_limits

STAFF = [
    (1, "Jane Doe", "jane.doe@example.com", 85000, "123-45-6789"),
    (2, "Omar Haddad", "omar@example.org", 72000, "987-65-4321"),
    (3, "Li Wei", "li.wei@example.com", 91000, "555-12-3456"),
]
MASKING = {"email": "email", "salary": "redact", "ssn": "partial", "name": "none"}


@pytest.fixture(params=["sqlite", "postgresql"])
def hr_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hr.db'}"
    else:
        url = request.getfixturevalue("postgres").url.replace(
            "postgresql://", "postgresql+psycopg://"
        )
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS staff"))
        conn.execute(
            text(
                "CREATE TABLE staff (id INTEGER PRIMARY KEY, name TEXT, email TEXT, "
                "salary INTEGER, ssn TEXT)"
            )
        )
        conn.execute(
            text("INSERT INTO staff VALUES (:id, :name, :email, :salary, :ssn)"),
            [
                dict(zip(("id", "name", "email", "salary", "ssn"), row, strict=True))
                for row in STAFF
            ],
        )
    engine.dispose()
    return url


@pytest.fixture
def rt(tmp_path, idp, manifest, hr_url):
    connectors = [
        {
            "name": "hr-db",
            "type": "sql",
            "access": "read-only",
            "secret": "hr-db-url",
            "masking": MASKING,
            "max_rows": 2,
            "timeout_seconds": 0.5,
        },
        {"name": "hr-admin", "type": "sql", "access": "read-write", "secret": "env:HR_ADMIN_URL"},
    ]
    raw = {
        **manifest.raw,
        "secrets": {"hr-db-url": "vault:kv/apps/leave-requests/hr-db#url"},
        "connectors": connectors,
    }
    environ = {"MICROAPP_SECRET_HR_DB_URL": hr_url, "HR_ADMIN_URL": hr_url}
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime = build_runtime(
        test_settings(tmp_path, idp, environ=environ),
        dataclasses.replace(manifest, raw=raw),
        tracer_provider=provider,
    )
    prepare_database(runtime)
    runtime.extras["spans"] = exporter
    with bound(runtime):
        yield runtime
    runtime.close()


def count(rt):
    return connector("hr-admin").query("SELECT count(*) AS n FROM staff")[0]["n"]


def test_rows_are_masked_and_capped(rt):
    rows = connector("hr-db").query("SELECT * FROM staff ORDER BY id")
    assert rows.truncated and len(rows) == 2 and rows.columns[0] == "id"
    assert rows[0] == {
        "id": 1,
        "name": "Jane Doe",
        "email": "j***@example.com",
        "salary": "[redacted]",
        "ssn": "****6789",
    }
    unmasked = connector("hr-admin").query("SELECT email FROM staff WHERE id = :id", id=1)
    assert unmasked[0]["email"] == "jane.doe@example.com"  # no rules on that connector


def test_hash_masking_is_stable_and_keyed(rt):
    hr = connector("hr-db")
    hr.masker.rules["email"] = "hash"
    first = hr.query("SELECT email FROM staff WHERE id = :id", id=1)[0]["email"]
    again = hr.query("SELECT email FROM staff WHERE id = :id", id=1)[0]["email"]
    other = hr.query("SELECT email FROM staff WHERE id = :id", id=2)[0]["email"]
    assert first == again != other and first.startswith("hash:") and "jane" not in first


def test_roles_in_unmasked_for_see_clear_text(rt):
    from guardrails.core.context import Actor, RequestInfo, set_request, unbind

    hr = connector("hr-db")
    hr.unmasked_for = frozenset({"pii-reader"})
    sql = "SELECT email FROM staff WHERE id = :id"
    for roles, expected in (((), "j***@example.com"), (("viewer",), "j***@example.com")):
        token = set_request(RequestInfo(actor=Actor(id="u@example.com", roles=roles)))
        try:
            assert hr.query(sql, id=1)[0]["email"] == expected
        finally:
            unbind(token)
    token = set_request(RequestInfo(actor=Actor(id="r@example.com", roles=("pii-reader",))))
    try:
        assert hr.query(sql, id=1)[0]["email"] == "jane.doe@example.com"
    finally:
        unbind(token)


def test_read_only_connector_refuses_and_audits_writes(rt):
    before = count(rt)
    with pytest.raises(ConnectorRefused, match="read-only"):
        connector("hr-db").query("UPDATE staff SET salary = 1 WHERE id = :id", id=1)
    with pytest.raises(ConnectorRefused, match="read-only"):
        connector("hr-db").query("DELETE FROM staff")
    with pytest.raises(ConnectorRefused, match="declared read-only"):
        connector("hr-db").execute("DELETE FROM staff")
    assert count(rt) == before
    denied = [e for e in audit_events(rt) if e["action"] == "connector.write"]
    assert len(denied) == 3 and {e["result"] for e in denied} == {"denied"}
    assert denied[0]["resource"] == {"type": "connector", "id": "hr-db"}
    assert denied[0]["metadata"]["operation"] == "UPDATE"


def test_query_never_writes_even_on_a_read_write_connector(rt):
    with pytest.raises(ConnectorRefused, match=r"query\(\) only reads"):
        connector("hr-admin").query("INSERT INTO staff (id, name) VALUES (:id, :n)", id=9, n="x")
    assert (
        connector("hr-admin").execute("UPDATE staff SET salary = :s WHERE id = :id", s=1, id=2) == 1
    )
    written = [e for e in audit_events(rt) if e["action"] == "connector.write"]
    assert [e["result"] for e in written] == ["denied", "success"]
    assert written[1]["metadata"] == {"operation": "UPDATE", "rows": 1}


def test_parameters_keep_an_injection_attempt_as_data(rt):
    hr = connector("hr-db")
    for attempt in ("x' OR '1'='1", "Robert'); DROP TABLE staff;--", "1; DELETE FROM staff"):
        assert hr.query("SELECT id FROM staff WHERE name = :name", name=attempt) == []
    assert count(rt) == len(STAFF)
    found = hr.query("SELECT name FROM staff WHERE name = :name", name="Li Wei")
    assert found == [{"name": "Li Wei"}]
    core = select(column("name")).select_from(table("staff")).where(column("id") == 2)
    assert hr.query(core) == [{"name": "Omar Haddad"}]  # SQLAlchemy statements are bound too


def test_values_inside_the_sql_text_are_refused(rt):
    hr = connector("hr-db")
    with pytest.raises(QueryRefused, match="bind parameters"):
        hr.query("SELECT * FROM staff WHERE name = 'Jane Doe'")
    with pytest.raises(QueryRefused, match="one statement"):
        hr.query("SELECT 1; DELETE FROM staff")
    with pytest.raises(QueryRefused, match="bind parameters"):
        hr.query("SELECT $$x$$")
    check_sql('SELECT "odd;name" FROM staff -- it\'s fine\n;')  # identifiers, comments, end ;


def test_slow_queries_are_cancelled(rt, hr_url):
    slow = (
        "SELECT pg_sleep(:s)"
        if hr_url.startswith("postgresql")
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT max(i) FROM n WHERE i < :s"
    )
    with pytest.raises(ConnectorUnavailable, match=r"longer than 0.5 s"):
        connector("hr-db").query(slow, s=10**9 if "RECURSIVE" in slow else 5)
    assert connector("hr-db").query("SELECT 1 AS one") == [{"one": 1}]  # connection still good


@pytest.mark.parametrize("hr_url", ["sqlite"], indirect=True)
def test_sqlite_read_only_cannot_attach_another_file(rt, tmp_path):
    with pytest.raises(ConnectorRefused):
        connector("hr-db").query("ATTACH DATABASE :f AS other", f=str(tmp_path / "other.db"))
    assert not (tmp_path / "other.db").exists()


@pytest.mark.parametrize("hr_url", ["postgresql"], indirect=True)
def test_postgres_read_only_holds_for_the_superuser(rt):
    hr = connector("hr-db")
    assert hr.query("SELECT current_user AS u")[0]["u"] == "postgres"
    assert hr.query("SHOW transaction_read_only") == [{"transaction_read_only": "on"}]
    assert hr.query("SET TRANSACTION READ WRITE") == []  # only for its own, rolled-back call
    with pytest.raises(ConnectorRefused):
        hr.query("WITH gone AS (DELETE FROM staff RETURNING id) SELECT count(*) FROM gone")
    with pytest.raises(ConnectorRefused):
        hr.query("CREATE TABLE sneaky (x int)")
    assert count(rt) == len(STAFF)
    assert connector("hr-admin").query("SHOW transaction_read_only")[0] == {
        "transaction_read_only": "on"
    }  # query() reads on every connector
    with hr.engine().connect() as conn:  # libpq's time limits, as the app's own connections
        assert libpq_time_limits(conn.connection.dbapi_connection) == PG_TIME_LIMITS


def test_every_call_is_traced_with_the_connector_name(rt):
    connector("hr-db").query("SELECT id FROM staff WHERE id = :id", id=3)
    (span,) = [s for s in rt.extras["spans"].get_finished_spans() if s.name.startswith("connector")]
    assert span.name == "connector hr-db SELECT"
    assert span.attributes["microapp.connector.name"] == "hr-db"
    assert span.attributes["db.query.text"] == "SELECT id FROM staff WHERE id = :id"
    assert "3" not in json.dumps(dict(span.attributes))  # parameters are not recorded


def test_undeclared_connectors_cannot_be_created(rt):
    with pytest.raises(ConnectorNotDeclared, match="'payroll' is not declared"):
        connector("payroll")


@pytest.mark.parametrize("hr_url", ["sqlite"], indirect=True)
def test_a_rotated_database_url_is_picked_up(rt, tmp_path):
    other = tmp_path / "other.db"
    engine = create_engine(f"sqlite:///{other}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE staff (id INTEGER, name TEXT)"))
        conn.execute(text("INSERT INTO staff VALUES (7, 'Rotated')"))
    engine.dispose()
    assert connector("hr-db").query("SELECT count(*) AS n FROM staff")[0]["n"] == 3
    rt.secrets.environ["MICROAPP_SECRET_HR_DB_URL"] = f"sqlite:///{other}"
    assert connector("hr-db").query("SELECT name FROM staff") == [{"name": "Rotated"}]


@pytest.mark.parametrize("hr_url", ["sqlite"], indirect=True)
def test_pages_turn_connector_refusals_into_clear_answers(rt, demo):
    from fastapi import APIRouter

    from guardrails import create_app, secret
    from guardrails.testing import login, serve

    def app_with_routes(runtime):
        app = create_app(runtime=runtime)
        router = APIRouter()

        @router.get("/wipe")
        def wipe():
            connector("hr-db").query("DELETE FROM staff")

        @router.get("/people")
        def people():
            return connector("hr-db").query("SELECT name, email FROM staff ORDER BY id")

        @router.get("/needs-token")
        def needs_token():
            return {"length": len(secret("hr-db-url"))}

        app.include_router(router)
        return app

    with serve(app_with_routes, rt) as live, live.client() as client:
        login(client, live, demo["admin"], next_path="/people")
        wipe = client.get(f"{live.url}/wipe")
        assert wipe.status_code == 403 and "hr-db is read-only" in wipe.text
        people = client.get(f"{live.url}/people", headers={"accept": "application/json"})
        assert people.json()[0] == {"name": "Jane Doe", "email": "j***@example.com"}
        rt.secrets.environ.pop("MICROAPP_SECRET_HR_DB_URL")
        missing = client.get(f"{live.url}/needs-token")
        assert missing.status_code == 503 and "secrets store" in missing.text
    assert count(rt) == len(STAFF)


def test_missing_postgres_binaries_are_reported(monkeypatch):
    import guardrails.testing.postgres as tp

    monkeypatch.setattr(tp.shutil, "which", lambda name: None)
    monkeypatch.setattr(tp.glob, "glob", lambda pattern: [])
    with pytest.raises(PostgresUnavailable, match="apt-get install postgresql"):
        tp.find_bin_dir()
