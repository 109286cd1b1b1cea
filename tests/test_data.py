"""An app's own data on PostgreSQL, and an app generated before migrations taking the update.

- Each kind's own tests (`tests/app`) run against a real PostgreSQL server (Debian's package,
  started here once), each test on a fresh, migrated database (MICROAPP_TEST_DATABASE_URL of
  the test kit), as they run on SQLite in `make test`.
- An approval app generated at the template version before migrations (1.0.0, commit
  08aeebb), holding data, takes `copier update`; `python -m guardrails db upgrade` (what
  `make db-upgrade` runs) keeps every row; then its owner adds a column the documented way and
  uses it, with its audit event, end to end.

The apps run on this repository's venv (the SDK from the working tree), not a venv of their
own: cheaper, and the SDK is the thing under test here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from copier import run_copy, run_update

from .conftest import ANSWER_SETS, DEFAULTS, REPO, run, snapshot

pytestmark = pytest.mark.slow
BEFORE_MIGRATIONS = "08aeebb"


def guardrails(app: Path, *args: str, check: bool = True, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "guardrails", *args],
        cwd=app,
        env={**os.environ, "PYTHONPATH": str(app / "src"), **env},
        capture_output=True,
        text=True,
        check=check,
    )


def python(app: Path, code: str, **env) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=app,
        env={**os.environ, "PYTHONPATH": str(app / "src"), **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def postgres():
    from guardrails.testing.postgres import cluster_or_skip

    with cluster_or_skip() as cluster:
        yield cluster


@pytest.mark.parametrize("answers", ["defaults", "dashboard", "incident-helper"])
def test_each_kinds_flows_pass_on_postgresql(tmp_path, postgres, answers):
    app = tmp_path / "app"
    template = snapshot(tmp_path / "template")
    data = ANSWER_SETS[answers]
    run_copy(str(template), app, data=data, defaults=True, unsafe=False, quiet=True)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/app"],
        cwd=app,
        env={
            **os.environ,
            "PYTHONPATH": str(app / "src"),
            "MICROAPP_TEST_DATABASE_URL": postgres.url,
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


def git(cwd: Path, *args: str) -> None:
    run(["git", *args], cwd=cwd)


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "-c", "core.hooksPath=/dev/null", "commit", "-q", "--allow-empty", "-m", message)


OLD_DATA = """
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
import app.main
from app.models import ApprovalRequest, Status
from guardrails import Model
from guardrails.web.sessions import SessionRow
import os
os.makedirs("var", exist_ok=True)
engine = create_engine("sqlite:///var/app.db")
Model.metadata.create_all(engine)          # as the app made its tables at start-up
SessionRow.__table__.create(engine)
with Session(engine) as db, db.begin():
    db.add(ApprovalRequest(title="Laptop", requester="r@example.com", status=Status.SUBMITTED))
"""

USE_THE_COLUMN = """
from sqlalchemy import select
from app.models import ApprovalRequest, Status
from guardrails import audit, runtime
from guardrails.auditing.chain import verify_db
with runtime() as rt:
    with rt.sessionmaker() as db, db.begin():
        req = ApprovalRequest(title="Chair", requester="r@example.com", priority="high")
        db.add(req)
        db.flush()
        audit.record("approval.create", resource=("request", req.id), metadata={"priority": "high"})
    with rt.sessionmaker() as db:
        rows = db.execute(select(ApprovalRequest.title, ApprovalRequest.priority)).all()
    print(sorted(tuple(r) for r in rows))
    print(verify_db(rt.engine, rt.manifest.app_id).ok)
"""


def test_an_app_from_before_migrations_keeps_its_data_and_takes_a_new_column(tmp_path):
    tpl = tmp_path / "template"
    run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(tpl)], cwd=REPO)
    git(tpl, "tag", "-f", "-a", "v9.0.0", BEFORE_MIGRATIONS, "-m", "before migrations")
    git(tpl, "rm", "-rq", "--ignore-unmatch", ".")
    snapshot(tpl)
    commit_all(tpl, "with migrations")
    git(tpl, "tag", "-f", "-a", "v9.1.0", "-m", "with migrations")

    app = tmp_path / "app"
    run_copy(str(tpl), app, data={**DEFAULTS}, defaults=True, unsafe=False, vcs_ref="v9.0.0",
             quiet=True)  # fmt: skip
    assert not (app / "migrations").exists()
    python(app, OLD_DATA)
    (app / "var/audit.jsonl").write_text('{"action":"auth.login","hash":"x","prev_hash":"0"}\n')
    git(app, "init", "-q", "-b", "main")
    commit_all(app, "generated before migrations, with data")
    run_update(app, vcs_ref="v9.1.0", defaults=True, overwrite=True, unsafe=False, quiet=True,
               conflict="inline", skip_answered=True)  # fmt: skip
    assert (app / "migrations/versions/0001_approval_request.py").exists()

    upgraded = guardrails(app, "db", "upgrade")  # what make db-upgrade runs
    assert "adopted a database made before migrations" in upgraded.stdout + upgraded.stderr
    listed = python(app, "import sqlite3; c = sqlite3.connect('var/app.db'); print(c.execute("
                    "'select title, status from approval_request').fetchall(), c.execute("
                    "'select version_num from alembic_version').fetchall())")  # fmt: skip
    assert listed.strip() == "[('Laptop', 'SUBMITTED')] [('0001',)]"

    # The owner adds a column, as docs/how-to/change-a-model.md says.
    models = app / "src/app/models.py"
    models.write_text(
        models.read_text().replace(
            "    archived_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), "
            "index=True)\n",
            "    archived_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), "
            "index=True)\n    priority: Mapped[str] = mapped_column(String(16), "
            'default="normal", server_default="normal")\n',
        )
    )
    refused = guardrails(app, "db", "check", check=False)
    assert refused.returncode == 1 and "add_column approval_request priority" in refused.stderr
    version = "import sqlite3; print(sqlite3.connect('var/app.db').execute('select version_num from alembic_version').fetchall())"  # noqa: E501
    before = python(app, version)
    assert "wrote" in guardrails(app, "db", "revision", "-m", "add priority").stdout
    assert python(app, version) == before  # writing a revision migrates no database
    guardrails(app, "db", "upgrade")
    assert guardrails(app, "db", "check").returncode == 0

    out = python(app, USE_THE_COLUMN, MICROAPP_AUDIT_FSYNC="false").splitlines()
    assert out[-2] == "[('Chair', 'high'), ('Laptop', 'normal')]" and out[-1] == "True"
    kept = list((app / "var").glob("audit.jsonl.before-database-*"))
    assert len(kept) == 1  # the old file is kept aside, the new one holds the chain
    assert guardrails(app, "audit", "verify", "--file", "var/audit.jsonl").returncode == 0
