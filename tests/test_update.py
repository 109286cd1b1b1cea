"""`copier update` in place: new guardrails arrive, owner code stays, migrations run once.

The template's real history is cloned into a temporary repository, with its release tags
(v0.1.0, v0.2.0, v1.0.0, ...), and two stand-in releases are tagged on top:
  276b400     an untagged commit after v0.2.0, the last with the guardrails vendored into every
              app (copier reads it as 0.2.0.postN, so the 1.0.0 migration runs)
  v{NEXT}     this working tree: the version guardrails/src/guardrails/_version.py says, or the
              next minor when that version is tagged already (the tree holds unreleased work)
  v{PATCH}    a patch release that only changes a template-owned file (no migration: no --trust)
No version is written here, so the tests keep passing after a version bump (`make release`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from copier import run_copy, run_update
from copier.errors import UnsafeTemplateError

from .conftest import DEFAULTS, REPO, progress, run, setup_app
from .releases import (
    COMPATIBLE,
    NEXT,
    PATCH,
    commit_all,
    git,
    snapshot_working_tree,
    tag_stand_in_releases,
)

pytestmark = pytest.mark.slow
MARKERS = re.compile(r"^(<<<<<<<|>>>>>>>) ", re.MULTILINE)
VENDORED = "276b400"


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> Path:
    tpl = tmp_path_factory.mktemp("template") / "microapp-templates"
    progress(f"cloning the template's history and tagging v{NEXT}, v{PATCH}")
    run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(tpl)], cwd=REPO)
    tag_stand_in_releases(tpl)
    return tpl


def copy_app(versions: Path, dst: Path, ref: str, **answers) -> Path:
    run_copy(
        str(versions),
        dst,
        data={**DEFAULTS, **answers},
        defaults=True,
        unsafe=False,
        vcs_ref=ref,
        quiet=True,
    )
    git(dst, "init", "-q", "-b", "main")
    commit_all(dst, f"Generated at {ref}")
    return dst


def update(app: Path, ref: str, unsafe: bool) -> None:
    run_update(
        app,
        vcs_ref=ref,
        defaults=True,
        overwrite=True,
        unsafe=unsafe,
        quiet=True,
        conflict="inline",
        skip_answered=True,
    )


def text_files(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and not {".git", ".venv"} & set(path.parts):
            try:
                yield path, path.read_text("utf-8")
            except UnicodeDecodeError:
                continue


OWNER_TEST = '''"""Yours to edit. Written when the guardrails were still vendored."""

from guardrails.audit import verify_file
from guardrails.runtime import bound  # noqa: F401  (kept to show the rewrite)


def test_owner_test_survives(live_app):
    assert verify_file(live_app.audit_file).ok
'''


def owner_edits(app: Path) -> None:
    """What an owner typically does between two updates."""
    routes = app / "src/app/routes.py"
    routes.write_text(
        routes.read_text() + '\n\n@router.get("/hello")\ndef hello() -> dict:\n'
        '    return {"hello": "world"}\n'
    )
    (app / "tests/app/test_hello.py").write_text(OWNER_TEST)
    pyproject = app / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("app = []  # yours", 'app = ["packaging>=23"]  # yours')
    )
    readme = app / "README.md"
    readme.write_text(
        readme.read_text().replace(
            "<!-- owner notes -->", "<!-- owner notes -->\nAsk Rita before approving travel."
        )
    )
    commit_all(app, "Owner edits")


def test_update_from_the_vendored_layout_to_the_package(versions, tmp_path, package_index):
    app = copy_app(versions, tmp_path / "app", VENDORED)
    assert (app / "src/guardrails/FILES.sha256").exists()  # the old, vendored layout
    owner_edits(app)

    progress(f"copier update {VENDORED} -> v{PATCH} (crosses the 1.0.0 migration)")
    update(app, f"v{PATCH}", unsafe=True)

    assert not (app / "src/guardrails").exists() and not (app / "tests/guardrails").exists()
    manifest = yaml.safe_load((app / "microapp.yaml").read_text())
    assert manifest["schema_version"] == 3 and manifest["data"]["writes"] is True
    assert "def hello() -> dict:" in (app / "src/app/routes.py").read_text()
    owner_test = (app / "tests/app/test_hello.py").read_text()
    assert "from guardrails import verify_audit as verify_file" in owner_test
    assert "from guardrails.testing import bound" in owner_test
    assert 'app = ["packaging>=23"]' in (app / "pyproject.toml").read_text()
    assert COMPATIBLE in (app / "pyproject.toml").read_text()
    assert "Ask Rita before approving travel." in (app / "README.md").read_text()
    assert not [p for p, text in text_files(app) if MARKERS.search(text)]
    assert not list(app.rglob("*.rej"))
    answers = yaml.safe_load((app / ".copier-answers.yml").read_text())
    assert answers["_commit"] == f"v{PATCH}"

    # What docs/how-to/update-an-app.md asks of the owner once the audit trail is in the
    # database: a test that broke the audit file must make the database refuse events instead.
    flow = app / "tests/app/test_approval_flow.py"
    old = (
        "    live_app.audit_file.unlink()\n    live_app.audit_file.mkdir()\n"
        "    answer = requester.post(\n"
        '        f"{live_app.url}/requests",\n'
        '        data={"title": "Unaudited", "action": "submit", "csrf_token": requester.token},\n'
        "    )\n"
    )
    new = (
        "    with audit_unwritable(live_app.runtime):\n"
        "        answer = requester.post(\n"
        '            f"{live_app.url}/requests",\n'
        "            data={"
        '"title": "Unaudited", "action": "submit", "csrf_token": requester.token},\n'
        "        )\n"
    )
    text = flow.read_text().replace(old, new)
    flow.write_text(
        text.replace(
            "from guardrails.testing import ",
            "from guardrails.testing import audit_unwritable, ",
            1,
        )
    )
    assert "with audit_unwritable(live_app.runtime):" in flow.read_text()
    # And, as the same guide says since ids became issuer#sub, a test that expects an e-mail
    # as the actor's id reads the actor's e-mail instead.
    text = flow.read_text()
    for before, after in [
        ('denied["actor"]["id"] == demo', 'denied["actor"]["email"] == demo'),
        ('(e["action"], e["actor"]["id"])', '(e["action"], e["actor"].get("email"))'),
    ]:
        assert before in text
        text = text.replace(before, after)
    flow.write_text(text)

    progress("make setup, check and test in the updated app")
    setup_app(app, package_index)
    run(["make", "check"], cwd=app)
    tests = run(["make", "test"], cwd=app, timeout=900)
    assert "passed" in tests.stdout and " failed" not in tests.stdout

    # The migration can be run again by hand: it changes nothing the second time.
    before = {p: t for p, t in text_files(app)}
    again = run([sys.executable, str(versions / "hooks/migrate_v1_guardrails_package.py")], cwd=app)
    assert {p: t for p, t in text_files(app)} == before, again.stdout

    # The app's own pre-commit hooks refuse committed conflict markers and .rej files.
    (app / "src/app/notes.py").write_text("<<<<<<< before updating\nx = 1\n=======\n")
    (app / "src/app/routes.py.rej").write_text("rejected hunk\n")
    git(app, "add", "-A")
    hooks = run([str(app / ".venv/bin/pre-commit"), "run", "--all-files"], cwd=app, check=False)
    assert hooks.returncode != 0
    assert "src/app/notes.py" in hooks.stdout and "routes.py.rej" in hooks.stdout


def test_the_major_migration_runs_only_with_trust(versions, tmp_path):
    app = copy_app(versions, tmp_path / "app", VENDORED)
    with pytest.raises(UnsafeTemplateError, match="migrations"):
        update(app, f"v{NEXT}", unsafe=False)
    assert (app / "src/guardrails").exists()


@pytest.mark.parametrize("kind", ["approval", "dashboard", "incident-helper"])
def test_patch_update_needs_no_trust_and_equals_a_fresh_copy(versions, tmp_path, kind):
    answers = {"kind": kind}
    app = copy_app(versions, tmp_path / "app", f"v{NEXT}", **answers)
    update(app, f"v{PATCH}", unsafe=False)
    assert f"release {PATCH}" in (app / "RUNBOOK.md").read_text()
    fresh = tmp_path / "fresh"
    run_copy(
        str(versions),
        fresh,
        data={**DEFAULTS, **answers},
        defaults=True,
        unsafe=False,
        vcs_ref=f"v{PATCH}",
        quiet=True,
    )
    result = subprocess.run(
        # the owner's catalog-info.yaml names the release it was made at until `make catalog`
        [
            "diff",
            "-r",
            "-x",
            ".git",
            "-I",
            "^_commit:",
            "-I",
            "microapp/template-version:",
            str(app),
            str(fresh),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_a_conflicting_edit_to_a_template_file_is_surfaced_not_lost(versions, tmp_path):
    app = copy_app(versions, tmp_path / "app", f"v{NEXT}")
    runbook = app / "RUNBOOK.md"
    runbook.write_text(runbook.read_text() + "\nOwner's own line at the end.\n")
    commit_all(app, "Hand edit of a template-owned file")
    update(app, f"v{PATCH}", unsafe=False)
    text = runbook.read_text()
    assert "Owner's own line at the end." in text and f"release {PATCH}" in text


def copier_cli(*args: str, cwd: Path, check: bool = True):
    return run([str(Path(sys.executable).parent / "copier"), *args], cwd=cwd, check=check)


def test_check_update_tells_an_app_it_is_behind(versions, tmp_path):
    app = copy_app(versions, tmp_path / "app", f"v{NEXT}")
    behind = copier_cli("check-update", "--quiet", cwd=app, check=False)
    assert behind.returncode == 2
    update(app, f"v{PATCH}", unsafe=False)
    commit_all(app, f"Update to v{PATCH}")
    assert copier_cli("check-update", "--quiet", cwd=app, check=False).returncode == 0


def test_release_gates(tmp_path):
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    git(tpl, "init", "-q", "-b", "main")
    snapshot_working_tree(tpl)
    commit_all(tpl, "Working tree")
    version_file = tpl / "guardrails/src/guardrails/_version.py"
    version = re.search(r'__version__ = "([^"]+)"', version_file.read_text())[1]

    def release_(v: str, **kw):
        return run(["make", "release", f"VERSION={v}", "RELEASE_CHECK=true"], cwd=tpl, check=False)

    (tpl / "stray.txt").write_text("not committed")
    assert "uncommitted changes" in release_(version).stdout
    (tpl / "stray.txt").unlink()
    assert "three numbers" in release_("1.2").stdout
    assert "no '## 9.9.9' section" in release_("9.9.9").stdout
    done = release_(version)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(tpl, "tag", "-l").split() == [f"v{version}"]
    assert "exists already" in release_(version).stdout
