"""The drift check names every template-owned file that was edited, removed or added, and a
vendored copy of the guardrails left over from template versions before 1.0."""

from importlib import metadata

import pytest

from guardrails.cli import drift
from guardrails.cli import main as cli

LOCK = """version = 1

[[package]]
name = "microapp-guardrails"
version = "{version}"
source = {{ registry = "https://packages.example.com/simple" }}
"""


@pytest.fixture
def app(tmp_path):
    """A rendered app's template-owned files, with their list written as the template does."""
    files = {
        "Makefile": "check:\n\tpython -m guardrails manifest check\n",
        ".pre-commit-config.yaml": "repos: []\n",
        "tests/conftest.py": 'pytest_plugins = ["guardrails.testing.plugin"]\n',
        "policy/microapp.rego": "package microapp.policy\n",
        "policy/data/allowed-connectors.json": "{}\n",
        "src/app/main.py": "# owner code: not covered\n",
        "uv.lock": LOCK.format(version=metadata.version("microapp-guardrails")),
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, "utf-8")
    assert drift.main([str(tmp_path), "--write"]) == 0
    return tmp_path


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
    found = drift.check(app)
    assert found.modified == ["Makefile"]
    assert found.missing == [".pre-commit-config.yaml"]
    assert found.added == ["policy/my_exception.rego"]
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
