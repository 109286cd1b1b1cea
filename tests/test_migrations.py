"""Fast tests of hooks/migrate_v1_guardrails_package.py on small fake apps (no copier).

Each test builds an app folder as 0.x left it (vendored src/guardrails/ with FILES.sha256,
tests/guardrails/, owner code importing guardrails internals, microapp.yaml at schema 1 or 2),
runs the hook as copier would (a subprocess in the app folder), checks the result, and runs it
again to check that the second run changes nothing and says so.
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parent.parent / "hooks" / "migrate_v1_guardrails_package.py"
SAVED = "migration-1.0.0-edited-guardrails"

VENDORED = {
    "src/guardrails/__init__.py": '"""Guardrails (vendored)."""\n',
    "src/guardrails/runtime.py": "def runtime():\n    pass\n",
    "src/guardrails/audit.py": "def verify_file(path):\n    return path\n",
    "tests/guardrails/__init__.py": "",
    "tests/guardrails/test_audit.py": "from guardrails.audit import verify_file\n",
}

MANIFEST_V2 = """\
# microapp.yaml - the single source of facts about this app.
schema_version: 2   # keep
app_id: leave-requests
kind: {kind}
support:
  contact: "#help"
data:
  classification: internal
  pii: true
  retention_days: 365
# Computed from the answers.
risk_tier: 2
"""

MANIFEST_V1 = """\
schema_version: 1
app_id: leave-requests
kind: approval
support:
  channel: "#help"   # chat
  sla_hours: 16
data:
    classification: internal
    retention_days: 30
risk_tier: 2
"""

MANIFEST_FLOW = """\
schema_version: 2
app_id: numbers
kind: dashboard
support: {contact: "#help"}
data: {classification: internal, pii: false, retention_days: 30}
risk_tier: 1
"""

OWNER_MAIN = '''\
"""Commands of the app."""

import sys  # standard library

from guardrails.runtime import runtime  # the context manager
from guardrails.runtime import build_runtime


def main() -> int:
    with runtime() as rt:
        return 0 if rt and build_runtime and sys else 1
'''

OWNER_ROUTES = """\
from guardrails.audit import audit, verify_file, AuditLog
from guardrails.sso import (
    User,  # who is signed in
    require_role as needs,
)
from guardrails.audit_trail import trail
from guardrails.config import Settings
import guardrails.manifest
import os; from guardrails.manifest import Manifest as M  # noqa: E702


def handler():
    from guardrails.web import render, create_app

    return render, create_app, audit, verify_file, AuditLog, User, needs, trail, M, os


def settings():  # layout and comments here survive
    return Settings, guardrails.manifest
"""

OWNER_TEST = """\
from guardrails.runtime import bound
from guardrails.testing import login
from guardrails.testing_vault import VaultServer
from guardrails.db import Model, db_session
from guardrails.secrets import secret, SecretUnavailable
from guardrails.connectors import (connector,
    ConnectorError)
from guardrails.ratelimit import limit_per_user
from guardrails import create_app


def test_something(monkeypatch):
    monkeypatch.setattr("guardrails.secrets.build_store", None)
    assert bound and login and VaultServer and Model and db_session and secret
    assert SecretUnavailable and connector and ConnectorError and limit_per_user and create_app
"""

CONFTEST = '"""Managed by the microapp template."""\n\npytest_plugins = ["guardrails.testing"]\n'


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")


def make_app(root: Path, manifest: str = MANIFEST_V2.format(kind="approval")) -> Path:
    """An app as 0.x generated it, plus the owner's code."""
    for rel, text in VENDORED.items():
        write(root, rel, text)
    write(root, "Makefile", "check:\n\ttrue\n")
    listed = {**VENDORED, "Makefile": "check:\n\ttrue\n"}
    hashes = "".join(
        f"{hashlib.sha256(text.encode()).hexdigest()}  {rel}\n"
        for rel, text in sorted(listed.items())
    )
    write(root, "src/guardrails/FILES.sha256", "# SHA-256 of template-owned files\n" + hashes)
    write(root, "microapp.yaml", manifest)
    write(root, "tests/conftest.py", CONFTEST)
    write(root, "src/app/__init__.py", "")
    write(root, "src/app/__main__.py", OWNER_MAIN)
    write(root, "src/app/routes.py", OWNER_ROUTES)
    write(root, "tests/app/test_flow.py", OWNER_TEST)
    write(root, "scripts/report.py", "from guardrails.manifest import load_manifest\n")
    # not owner code: must stay as they are
    write(root, ".venv/lib/site.py", "from guardrails.runtime import runtime\n")
    write(root, "var/scratch.py", "from guardrails.runtime import runtime\n")
    return root


def run_hook(app: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(app.parent)}
    return subprocess.run(
        [sys.executable, str(HOOK)], cwd=app, capture_output=True, text=True, timeout=60, env=env
    )


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def migrated_twice(app: Path) -> subprocess.CompletedProcess[str]:
    """Run the hook, check it succeeded, run it again and check nothing changed."""
    first = run_hook(app)
    assert first.returncode == 0, first.stdout + first.stderr
    before = tree(app)
    second = run_hook(app)
    assert second.returncode == 0, second.stdout + second.stderr
    assert tree(app) == before
    assert "nothing to do" in second.stdout
    assert "nothing to remove" in second.stdout
    warnings = [
        line for line in first.stdout.splitlines() if ": warning: " in line and ".py:" in line
    ]
    assert warnings == [
        line for line in second.stdout.splitlines() if ": warning: " in line and ".py:" in line
    ]
    return first


def test_full_migration(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    write(app, "src/guardrails/runtime.py", "def runtime():\n    return 'patched'\n")  # edited
    write(app, "src/guardrails/extra.py", "X = 1\n")  # added by the owner
    first = migrated_twice(app)
    out = first.stdout

    assert not (app / "src/guardrails").exists()
    assert not (app / "tests/guardrails").exists()
    assert (app / SAVED / "src/guardrails/runtime.py").read_text() == (
        "def runtime():\n    return 'patched'\n"
    )
    assert (app / SAVED / "src/guardrails/extra.py").read_text() == "X = 1\n"
    assert not (app / SAVED / "src/guardrails/audit.py").exists()  # unchanged: not saved
    assert "src/guardrails/runtime.py (edited by you) saved to" in out
    assert out.count("propose changes to them to the CoE") == 2

    assert (app / "src/app/__main__.py").read_text() == OWNER_MAIN.replace(
        "from guardrails.runtime import runtime  #", "from guardrails import runtime  #"
    )
    assert "src/app/__main__.py:6: `from guardrails.runtime import build_runtime`" in out
    assert "guardrails.runtime() as rt" in out

    assert (app / "src/app/routes.py").read_text() == textwrap.dedent("""\
        from guardrails import audit, verify_audit as verify_file
        from guardrails.audit import AuditLog
        # who is signed in
        from guardrails import User, audit_trail as trail, require_role as needs
        from guardrails.config import Settings
        import guardrails.manifest
        import os; from guardrails import Manifest as M  # noqa: E702


        def handler():
            from guardrails import render, create_app

            return render, create_app, audit, verify_file, AuditLog, User, needs, trail, M, os


        def settings():  # layout and comments here survive
            return Settings, guardrails.manifest
        """)
    assert "src/app/routes.py:2: `from guardrails.audit import AuditLog` kept" in out
    assert "src/app/routes.py:5: `from guardrails.config import Settings` kept" in out
    assert "src/app/routes.py:6: `import guardrails.manifest` kept" in out

    # One block, merged and sorted as ruff's isort wants it (make check passes unchanged).
    _, _, body = OWNER_TEST.partition("\n\n\n")
    assert (app / "tests/app/test_flow.py").read_text() == textwrap.dedent("""\
        from guardrails import (
            ConnectorError,
            Model,
            SecretUnavailable,
            connector,
            create_app,
            db_session,
            limit_per_user,
            secret,
        )
        from guardrails.testing import VaultServer, bound, login
        """) + "\n\n" + body
    assert "'guardrails.secrets.build_store' names a guardrails internal" in out

    assert (app / "scripts/report.py").read_text() == "from guardrails import load_manifest\n"
    assert (app / ".venv/lib/site.py").read_text() == "from guardrails.runtime import runtime\n"
    assert (app / "var/scratch.py").read_text() == "from guardrails.runtime import runtime\n"
    assert (app / "tests/conftest.py").read_text() == CONFTEST.replace(
        '"guardrails.testing"', '"guardrails.testing.plugin"'
    )
    assert "schema_version 2 -> 3" in out
    assert "run `make fmt`" in out


def test_rewritten_files_parse(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    migrated_twice(app)
    for path in app.rglob("*.py"):
        ast.parse(path.read_text("utf-8"), filename=str(path))


def test_long_parenthesised_import_stays_wrapped(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    write(
        app,
        "src/app/views.py",
        "if True:\n"
        "    from guardrails.sso import (\n"
        "        User as SignedInUser,\n"
        "        current_user as who_is_signed_in,\n"
        "        require_role as needs_role,\n"
        "        require_user as needs_user,\n"
        "    )\n",
    )
    migrated_twice(app)
    assert (app / "src/app/views.py").read_text() == (
        "if True:\n"
        "    from guardrails import (\n"
        "        User as SignedInUser,\n"
        "        current_user as who_is_signed_in,\n"
        "        require_role as needs_role,\n"
        "        require_user as needs_user,\n"
        "    )\n"
    )


def test_crlf_files_keep_their_line_endings(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    (app / "src/app/win.py").write_bytes(
        b"from guardrails.audit import (\r\n    audit,\r\n    verify_file,\r\n)\r\nX = 1\r\n"
    )
    migrated_twice(app)
    assert (app / "src/app/win.py").read_bytes() == (
        b"from guardrails import audit, verify_audit as verify_file\r\nX = 1\r\n"
    )


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param(
            MANIFEST_V2.format(kind="approval"),
            MANIFEST_V2.format(kind="approval")
            .replace("schema_version: 2   # keep", "schema_version: 3  # keep")
            .replace(
                "  pii: true\n",
                "  pii: true\n  writes: true           # does the app change data? "
                "(risk tier 2 if so)\n",
            ),
            id="schema2-block",
        ),
        pytest.param(
            MANIFEST_V2.format(kind="dashboard"),
            MANIFEST_V2.format(kind="dashboard")
            .replace("schema_version: 2   # keep", "schema_version: 3  # keep")
            .replace(
                "  pii: true\n",
                "  pii: true\n  writes: false           # does the app change data? "
                "(risk tier 2 if so)\n",
            ),
            id="schema2-dashboard",
        ),
        pytest.param(
            MANIFEST_V1,
            MANIFEST_V1.replace("schema_version: 1", "schema_version: 3")
            .replace("  channel:", "  contact:")
            .replace(
                "    retention_days: 30\n",
                "    retention_days: 30\n    writes: true           # does the app change data? "
                "(risk tier 2 if so)\n",
            ),
            id="schema1",
        ),
        pytest.param(
            MANIFEST_FLOW,
            MANIFEST_FLOW.replace("schema_version: 2", "schema_version: 3").replace(
                "retention_days: 30}", "retention_days: 30, writes: false}"
            ),
            id="flow-style",
        ),
    ],
)
def test_manifest_schema_3(tmp_path: Path, manifest: str, expected: str) -> None:
    app = make_app(tmp_path / "app", manifest)
    migrated_twice(app)
    assert (app / "microapp.yaml").read_text() == expected


def test_manifest_already_merged_by_copier(tmp_path: Path) -> None:
    merged = (
        MANIFEST_V2.format(kind="approval")
        .replace("schema_version: 2", "schema_version: 3")
        .replace("  pii: true\n", "  pii: true\n  writes: true\n")
    )
    app = make_app(tmp_path / "app", merged)
    first = migrated_twice(app)
    assert (app / "microapp.yaml").read_text() == merged
    assert "microapp.yaml: already at schema_version 3" in first.stdout


def test_conflict_markers_refuse_and_change_nothing(tmp_path: Path) -> None:
    conflicted = MANIFEST_V2.format(kind="approval").replace(
        "  pii: true\n",
        "<<<<<<< before updating\n  pii: true\n=======\n  pii: false\n>>>>>>> after\n",
    )
    app = make_app(tmp_path / "app", conflicted)
    write(app, ".copier-answers.yml", "_commit: v0.3.0\n_src_path: gh:coe/microapp-template\n")
    before = tree(app)
    result = run_hook(app)
    assert result.returncode == 1
    assert "conflict markers" in result.stderr
    assert "migrate_v1_guardrails_package.py" in result.stderr
    assert "gh:coe/microapp-template" in result.stderr
    assert tree(app) == before
    # resolved: the migration then runs
    write(app, "microapp.yaml", MANIFEST_V2.format(kind="approval"))
    migrated_twice(app)


def test_unparseable_owner_file_fails_clearly(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    broken = "<<<<<<< before\nfrom guardrails.runtime import runtime\n=======\n>>>>>>> after\n"
    write(app, "src/app/broken.py", broken)
    result = run_hook(app)
    assert result.returncode == 1
    assert "src/app/broken.py:1: cannot parse" in result.stderr
    assert "run this migration again" in result.stderr
    assert (app / "src/app/broken.py").read_text() == broken
    assert not (app / "src/guardrails").exists()  # the rest was done
    write(app, "src/app/broken.py", "from guardrails.runtime import runtime\n")
    migrated_twice(app)
    assert (app / "src/app/broken.py").read_text() == "from guardrails import runtime\n"


def test_missing_hash_list_saves_every_vendored_file(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    (app / "src/guardrails/FILES.sha256").unlink()
    first = migrated_twice(app)
    assert "cannot tell edited files" in first.stdout
    for rel, text in VENDORED.items():
        assert (app / SAVED / rel).read_text() == text


def test_already_migrated_app(tmp_path: Path) -> None:
    app = tmp_path / "app"
    write(app, "microapp.yaml", MANIFEST_FLOW.replace("pii: false", "pii: false, writes: false"))
    write(app, "microapp.yaml", (app / "microapp.yaml").read_text().replace(": 2", ": 3", 1))
    write(app, "tests/conftest.py", CONFTEST.replace("testing", "testing.plugin"))
    write(app, "src/app/routes.py", "from guardrails import runtime, verify_audit as verify_file\n")
    before = tree(app)
    result = run_hook(app)
    assert result.returncode == 0, result.stderr
    assert tree(app) == before
    assert "nothing to do" in result.stdout
    assert "warning" not in result.stdout


def test_outside_an_app_folder(tmp_path: Path) -> None:
    write(tmp_path, "x.py", "from guardrails.runtime import runtime\n")
    result = run_hook(tmp_path)
    assert result.returncode == 1
    assert "no microapp.yaml" in result.stderr
    assert (tmp_path / "x.py").read_text() == "from guardrails.runtime import runtime\n"


V1_MANIFEST = """\
schema_version: 1   # first release
app_id: leave-requests
support:
  channel: "#hr-ops"   # where users ask
  sla_hours: 16
"""


def test_the_0_2_0_migration_still_runs_on_its_own(tmp_path: Path) -> None:
    """An app from before 0.2.0 crosses both migrations on its update: the 0.2.0 one first."""
    app = tmp_path / "app"
    write(app, "microapp.yaml", V1_MANIFEST)
    hook = [sys.executable, str(HOOK.parent / "migrate_manifest_v2.py")]
    first = subprocess.run(hook, cwd=app, capture_output=True, text=True, check=True)
    text = (app / "microapp.yaml").read_text()
    assert "schema_version: 2  # first release" in text
    assert '  contact: "#hr-ops"   # where users ask' in text and "channel" not in text
    assert "support.channel renamed to support.contact" in first.stdout
    again = subprocess.run(hook, cwd=app, capture_output=True, text=True, check=True)
    assert (app / "microapp.yaml").read_text() == text and "nothing to do" in again.stdout


def test_an_api_test_with_an_id_token_moves_to_an_access_token(tmp_path: Path) -> None:
    """Before 1.0.0 the starter's API test sent the provider's ID token as a bearer token;
    1.0.0 refuses ID tokens there, so the migration gives the test an access token."""
    app = tmp_path / "app"
    write(app, "microapp.yaml", MANIFEST_V2)
    write(
        app,
        "tests/app/test_api.py",
        "def test_api(live_app):\n"
        "    from guardrails.testing import provider_id_token\n\n"
        "    token = provider_id_token('http://localhost:9400', 'app', 'a@example.com')\n",
    )
    done = run_hook(app)
    text = (app / "tests/app/test_api.py").read_text()
    assert "from guardrails.testing import local_access_token as provider_id_token" in text
    assert "token = provider_id_token(" in text  # the call sites keep their name
    assert "local_access_token" in done.stdout
    before = text
    run_hook(app)
    assert (app / "tests/app/test_api.py").read_text() == before
