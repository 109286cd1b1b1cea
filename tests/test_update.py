"""`copier update` in place: new guardrails arrive, owner code stays, migrations run once.

Throw-away template versions are built from this working tree in a temporary git repository:
  v0.1.0  the first release as apps got it (manifest schema_version 1, `support.channel`)
  v0.2.0  this working tree: schema_version 2 and the migration hooks/migrate_manifest_v2.py
  v0.2.1  a minor release that only changes a guardrail file (no migration: no --trust)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from copier import run_copy, run_update
from copier.errors import UnsafeTemplateError

from .conftest import DEFAULTS, REPO, run

pytestmark = pytest.mark.slow
MARKERS = re.compile(r"^(<<<<<<<|>>>>>>>) ", re.MULTILINE)
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "demo", "__pycache__", ".pytest_cache", ".ruff_cache", "bench"
)


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd=cwd).stdout


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "-c", "core.hooksPath=/dev/null", "commit", "-q", "--allow-empty", "-m", message)


def release(tpl: Path, version: str) -> None:
    run([sys.executable, "templates/src/guardrails/drift.py", "--write", "templates"], cwd=tpl)
    commit_all(tpl, f"Release {version}")
    git(tpl, "tag", "-a", f"v{version}", "-m", f"Release {version}")


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> Path:
    tpl = tmp_path_factory.mktemp("template") / "microapp-templates"
    shutil.copytree(REPO, tpl, ignore=IGNORE)
    git(tpl, "init", "-q", "-b", "main")
    manifest = tpl / "templates" / "microapp.yaml.jinja"
    current = manifest.read_text()
    first = current.replace("schema_version: 2", "schema_version: 1").replace(
        "  contact:", "  channel:"
    )
    assert first != current, "the v0.1.0 stand-in must differ from HEAD's manifest"
    manifest.write_text(first)
    release(tpl, "0.1.0")
    manifest.write_text(current)
    release(tpl, "0.2.0")
    version_file = tpl / "templates/src/guardrails/_version.py"
    version_file.write_text(
        re.sub(r'__version__ = "[^"]+"', '__version__ = "0.2.1"', version_file.read_text())
    )
    release(tpl, "0.2.1")
    return tpl


def copy_app(versions: Path, dst: Path, ref: str) -> Path:
    run_copy(
        str(versions), dst, data=DEFAULTS, defaults=True, unsafe=False, vcs_ref=ref, quiet=True
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
        if path.is_file() and ".git" not in path.parts and ".venv" not in path.parts:
            try:
                yield path, path.read_text("utf-8")
            except UnicodeDecodeError:
                continue


def owner_edits(app: Path) -> None:
    """What an owner typically does between two updates."""
    routes = app / "src/app/routes.py"
    routes.write_text(
        routes.read_text() + '\n\n@router.get("/hello")\ndef hello() -> dict:\n'
        '    return {"hello": "world"}\n'
    )
    (app / "tests/app/test_hello.py").write_text(
        '"""Yours to edit."""\n\n\ndef test_owner_test_survives():\n    assert True\n'
    )
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


def test_update_across_two_versions_keeps_owner_edits_and_migrates(versions, tmp_path):
    app = copy_app(versions, tmp_path / "app", "v0.1.0")
    assert "schema_version: 1" in (app / "microapp.yaml").read_text()
    owner_edits(app)

    update(app, "v0.2.1", unsafe=True)  # crosses v0.2.0, whose migration needs trust

    manifest = yaml.safe_load((app / "microapp.yaml").read_text())
    assert manifest["schema_version"] == 2 and manifest["support"]["contact"] == "#hr-ops"
    assert '"0.2.1"' in (app / "src/guardrails/_version.py").read_text()
    assert "def hello() -> dict:" in (app / "src/app/routes.py").read_text()
    assert (app / "tests/app/test_hello.py").exists()
    assert 'app = ["packaging>=23"]' in (app / "pyproject.toml").read_text()
    assert "Ask Rita before approving travel." in (app / "README.md").read_text()
    assert not [p for p, text in text_files(app) if MARKERS.search(text)]
    assert not list(app.rglob("*.rej"))
    answers = yaml.safe_load((app / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v0.2.1"

    run(["make", "setup", f"PYTHON={sys.executable}"], cwd=app, timeout=900)
    run(["make", "check"], cwd=app)
    tests = run(["make", "test"], cwd=app, timeout=900)
    assert "test_owner_test_survives" not in tests.stdout or " failed" not in tests.stdout

    # The app's own pre-commit hooks refuse committed conflict markers and .rej files.
    (app / "src/app/notes.py").write_text("<<<<<<< before updating\nx = 1\n=======\n")
    (app / "src/app/routes.py.rej").write_text("rejected hunk\n")
    git(app, "add", "-A")
    hooks = run([str(app / ".venv/bin/pre-commit"), "run", "--all-files"], cwd=app, check=False)
    assert hooks.returncode != 0
    assert "src/app/notes.py" in hooks.stdout and "routes.py.rej" in hooks.stdout


def test_migration_runs_only_with_trust(versions, tmp_path):
    app = copy_app(versions, tmp_path / "app", "v0.1.0")
    with pytest.raises(UnsafeTemplateError, match="migrations"):
        update(app, "v0.2.0", unsafe=False)
    assert "schema_version: 1" in (app / "microapp.yaml").read_text()


def test_minor_update_needs_no_trust(versions, tmp_path):
    app = copy_app(versions, tmp_path / "app", "v0.2.0")
    update(app, "v0.2.1", unsafe=False)
    assert '"0.2.1"' in (app / "src/guardrails/_version.py").read_text()


def test_conflicting_edit_to_a_guardrail_is_surfaced_not_lost(versions, tmp_path):
    app = copy_app(versions, tmp_path / "app", "v0.2.0")
    version_file = app / "src/guardrails/_version.py"
    version_file.write_text(version_file.read_text().replace('"0.2.0"', '"0.2.0-patched"'))
    commit_all(app, "Hand edit of a guardrail")
    drift = run([sys.executable, "src/guardrails/drift.py"], cwd=app, check=False)
    assert drift.returncode == 1 and "edited   src/guardrails/_version.py" in drift.stderr

    update(app, "v0.2.1", unsafe=False)

    text = version_file.read_text()
    assert "<<<<<<< before updating" in text and ">>>>>>> after updating" in text
    assert '"0.2.0-patched"' in text and '"0.2.1"' in text  # both sides kept
    drift = run([sys.executable, "src/guardrails/drift.py"], cwd=app, check=False)
    assert drift.returncode == 1 and "src/guardrails/_version.py" in drift.stderr


def test_updated_app_equals_a_fresh_copy(versions, tmp_path):
    updated = copy_app(versions, tmp_path / "updated", "v0.1.0")
    update(updated, "v0.2.1", unsafe=True)
    fresh = tmp_path / "fresh"
    run_copy(
        str(versions),
        fresh,
        data=DEFAULTS,
        defaults=True,
        unsafe=False,
        vcs_ref="v0.2.1",
        quiet=True,
    )
    result = subprocess.run(
        ["diff", "-r", "-x", ".git", "-I", "^_commit:", str(updated), str(fresh)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def copier_cli(*args: str, cwd: Path, check: bool = True):
    return run([str(Path(sys.executable).parent / "copier"), *args], cwd=cwd, check=check)


def test_check_update_tells_an_app_it_is_behind(versions, tmp_path):
    app = copy_app(versions, tmp_path / "app", "v0.2.0")
    behind = copier_cli("check-update", "--quiet", cwd=app, check=False)
    assert behind.returncode == 2
    update(app, "v0.2.1", unsafe=False)
    commit_all(app, "Update to v0.2.1")
    assert copier_cli("check-update", "--quiet", cwd=app, check=False).returncode == 0


def test_release_gates(tmp_path):
    tpl = tmp_path / "tpl"
    shutil.copytree(REPO, tpl, ignore=IGNORE)
    git(tpl, "init", "-q", "-b", "main")
    commit_all(tpl, "Working tree")
    version_file = tpl / "templates/src/guardrails/_version.py"
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
