# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
"""The drift check names every template-owned file that was edited, removed or added."""

import shutil
from pathlib import Path

import pytest

from guardrails import drift

APP = Path(__file__).resolve().parents[2]


@pytest.fixture
def copy_of_app(tmp_path):
    for rel in drift.covered_files(APP) + [drift.LIST]:
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(APP / rel, target)
    return tmp_path


def test_this_app_has_not_drifted():
    assert drift.check(APP).clean, drift.check(APP)


def test_every_kind_of_drift_is_named(copy_of_app, capsys):
    (copy_of_app / "src/guardrails/audit.py").write_text("# quick fix\n", "utf-8")
    (copy_of_app / "tests/guardrails/test_audit.py").unlink()
    (copy_of_app / "src/guardrails/my_helper.py").write_text("x = 1\n", "utf-8")
    found = drift.check(copy_of_app)
    assert found.modified == ["src/guardrails/audit.py"]
    assert found.missing == ["tests/guardrails/test_audit.py"]
    assert found.added == ["src/guardrails/my_helper.py"]
    assert drift.main([str(copy_of_app)]) == 1
    err = capsys.readouterr().err
    assert "edited   src/guardrails/audit.py" in err
    assert "propose the change to the CoE" in err


def test_a_missing_list_is_reported(copy_of_app, capsys):
    (copy_of_app / drift.LIST).unlink()
    assert drift.main([str(copy_of_app)]) == 1
    assert "is missing" in capsys.readouterr().err


def test_caches_do_not_count(copy_of_app):
    cache = copy_of_app / "src/guardrails/__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "audit.cpython-311.pyc").write_bytes(b"\0")
    assert drift.check(copy_of_app).clean
