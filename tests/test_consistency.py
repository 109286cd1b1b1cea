"""Cheap checks that two copies of one fact have not drifted apart."""

import re
import sys
import tomllib

import yaml

from .conftest import GUARDRAILS, REPO, TEMPLATES


def test_python_version_agrees():
    app = (TEMPLATES / "pyproject.toml.jinja").read_text()
    assert 'requires-python = ">=3.11"' in app and 'target-version = "py311"' in app
    repo = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert repo["project"]["requires-python"] == ">=3.11"
    assert repo["tool"]["ruff"]["target-version"] == "py311"


def test_guardrails_version_is_released_in_the_changelog():
    version = re.search(r'__version__ = "([^"]+)"', (GUARDRAILS / "_version.py").read_text())[1]
    assert f"## {version}" in (REPO / "CHANGELOG.md").read_text()


def test_manifest_schema_kinds_match_the_kind_question():
    schema_kinds = set(
        __import__("json").loads((GUARDRAILS / "manifest.schema.json").read_text())["properties"][
            "kind"
        ]["enum"]
    )
    question = yaml.safe_load((REPO / "copier.yml").read_text())["kind"]["choices"]
    assert set(question.values()) == schema_kinds


def test_readme_and_ci_use_the_same_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "make test" in (REPO / "README.md").read_text()
    assert "make demo" in (REPO / "README.md").read_text()


def test_guardrail_hash_list_is_current():
    """`make hashes` must run after any change to a template-owned file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("drift", GUARDRAILS / "drift.py")
    drift = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = drift  # dataclasses look their module up there
    spec.loader.exec_module(drift)
    found = drift.check(TEMPLATES)
    assert found.clean, f"run `make hashes`: {found}"
