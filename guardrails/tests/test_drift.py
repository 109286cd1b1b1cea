"""The drift check names every template-owned file that was edited, removed or added, a
vendored copy of the guardrails left over from template versions before 1.0, and an installed
SDK that is not the locked one."""

import shutil
from importlib import metadata
from pathlib import Path

import pytest

from guardrails.cli import drift
from guardrails.cli import main as cli

LOCK = """version = 1

[[package]]
name = "microapp-guardrails"
version = "{version}"
source = {{ registry = "https://packages.example.com/simple" }}
"""
SHARED = {  # the template's shared tree: what copier copies as it is, plus two templates
    "Makefile": "check:\n\tpython -m guardrails manifest check\n",
    ".pre-commit-config.yaml": "repos: []\n",
    "tests/conftest.py": 'pytest_plugins = ["guardrails.testing.plugin"]\n',
    "policy/microapp.rego": "package microapp.policy\n",
    "policy/data/allowed-connectors.json": "{}\n",
    "README.md.jinja": "# {{ app_name }}\n",
    "{% if ci %}.github{% endif %}/ci.yml": "on: push\n",
}
KIND = {"src/app/main.py": "# owner code\n", "tests/app/test_x.py": "# owner test\n"}


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, "utf-8")


@pytest.fixture
def template(tmp_path):
    """A template's shared tree and one kind's tree, with the list written as `make hashes`."""
    shared, kind = tmp_path / "templates", tmp_path / "kind-files"
    write(shared, SHARED)
    write(kind, KIND)
    assert drift.main([str(shared), "--write", "--extended-by", str(kind)]) == 0
    return shared, kind


@pytest.fixture
def app(template, tmp_path):
    """An app rendered from it: the shared files as they are, the kind's files, a lock."""
    shared, kind = template
    app = tmp_path / "app"
    shutil.copytree(shared, app)
    shutil.copytree(kind, app, dirs_exist_ok=True)
    (app / "README.md.jinja").unlink()
    (app / "README.md").write_text("# App\n", "utf-8")
    (app / "uv.lock").write_text(LOCK.format(version=metadata.version("microapp-guardrails")))
    return app


def test_the_list_is_the_shared_tree_less_its_templates(template):
    shared, _ = template
    listed = drift.read_list(shared)
    assert sorted(listed) == sorted(
        rel for rel in SHARED if not rel.endswith(".jinja") and "{%" not in rel
    )
    # policy/ is the template's whole; tests/ is not (every kind adds tests/app/)
    assert drift.read_owned(shared) == ["policy/", "policy/data/"]


def test_a_fresh_app_has_not_drifted(app, capsys):
    assert drift.check(app).clean
    assert "src/app/main.py" not in drift.read_list(app)
    assert cli(["drift", str(app)]) == 0
    assert "5 template-owned files unchanged" in capsys.readouterr().out


def test_the_installed_sdk_must_be_the_locked_one(app, capsys):
    (app / "uv.lock").write_text(LOCK.format(version="0.0.1"), "utf-8")
    assert cli(["drift", str(app)]) == 1
    assert "uv.lock pins 0.0.1: run `make setup`" in capsys.readouterr().err
    (app / "uv.lock").unlink()
    assert cli(["drift", str(app)]) == 1
    assert "uv.lock is missing" in capsys.readouterr().err


def test_every_kind_of_drift_is_named(app, capsys):
    (app / "Makefile").write_text("# quick fix\n", "utf-8")
    (app / ".pre-commit-config.yaml").unlink()
    (app / "policy/my_exception.rego").write_text("package x\n", "utf-8")
    (app / "policy/data/more-connectors.json").write_text('{"allowed": []}\n', "utf-8")
    (app / "tests/app/test_more.py").write_text("# the owner's: fine\n", "utf-8")
    found = drift.check(app)
    assert found.modified == ["Makefile"]
    assert found.missing == [".pre-commit-config.yaml"]
    assert found.added == ["policy/data/more-connectors.json", "policy/my_exception.rego"]
    assert drift.main([str(app)]) == 1
    err = capsys.readouterr().err
    assert "edited   Makefile" in err
    assert "propose the change to the CoE" in err


def test_a_vendored_guardrails_copy_is_refused(app, capsys):
    (app / "src/guardrails").mkdir(parents=True)
    (app / "src/guardrails/__init__.py").write_text("", "utf-8")
    found = drift.check(app)
    assert found.vendored == ["src/guardrails/"] and not found.clean
    assert drift.main([str(app)]) == 1
    assert "microapp-guardrails package" in capsys.readouterr().err


def test_a_missing_list_is_reported(app, capsys):
    (app / drift.LIST).unlink()
    assert drift.main([str(app)]) == 1
    assert "is missing" in capsys.readouterr().err


def test_caches_do_not_count(app):
    cache = app / "policy/__pycache__"
    cache.mkdir()
    (cache / "x.cpython-311.pyc").write_bytes(b"\0")
    assert drift.check(app).clean


def test_uv_lock_is_parsed_once(app, monkeypatch, capsys):
    parsed = []
    loads = drift.tomllib.loads
    monkeypatch.setattr(drift.tomllib, "loads", lambda text: parsed.append(1) or loads(text))
    assert drift.main([str(app)]) == 0
    assert len(parsed) == 1
