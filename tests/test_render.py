"""What `copier copy` renders: layout, ownership split, manifest content, no trust needed."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pathspec
import pytest
import yaml
from copier import run_copy

from . import inprocess
from .conftest import ANSWER_SETS, DEFAULTS, REPO, SECOND, copier_config

EXPECTED = [
    "microapp.yaml",
    ".copier-answers.yml",
    "README.md",
    "RUNBOOK.md",
    "Makefile",
    "app.mk",
    "pyproject.toml",
    ".pre-commit-config.yaml",
    ".gitignore",
    ".github/workflows/ci.yml",
    "tests/contract/test_guardrails_contract.py",
    "policy/microapp.rego",
    "deploy/chart/Chart.yaml",
    "deploy/chart/templates/networkpolicy.yaml",
    "deploy/values-staging.yaml",
    "deploy/values-production.yaml",
    "src/app/main.py",
    "src/app/routes.py",
    "src/app/workflow.py",
    "src/app/pages/list.html",
    "tests/conftest.py",
    "tests/app/test_approval_flow.py",
]


def files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def risk_tier(data: dict) -> int:
    """The one rule (guardrails.core.rules), from the SDK installed in this repository's venv."""
    from guardrails.core.rules import risk_tier as rule

    return rule(data)[0]


KIND_FILES = {
    "approval": [
        "src/app/workflow.py",
        "src/app/pages/list.html",
        "tests/app/test_approval_flow.py",
    ],
    "dashboard": [
        "src/app/charts.py",
        "src/app/demo_data.py",
        "src/app/pages/summary.html",
        "tests/app/test_dashboard.py",
    ],
    "incident-helper": [
        "src/app/incidents.py",
        "src/app/provider.py",
        "tests/app/test_adapters.py",
    ],
}
SHARED = [f for f in EXPECTED if f not in KIND_FILES["approval"]]


@pytest.mark.parametrize("answers", ["defaults", "second", "dashboard", "incident-helper"])
def test_layout(rendered, answers):
    present = files(rendered[answers])
    kind = yaml.safe_load((rendered[answers] / "microapp.yaml").read_text())["kind"]
    missing = [f for f in SHARED + KIND_FILES[kind] if f not in present]
    assert not missing
    others = [f for k, names in KIND_FILES.items() if k != kind for f in names]
    assert not [f for f in others if f in present], "another kind's starter leaked in"
    assert not [f for f in present if f.endswith(".jinja") or "{" in f or "%" in f]


def test_no_app_vendors_the_guardrails(rendered):
    """The guardrails are a dependency (microapp-guardrails), pinned, never copied."""
    version = re.search(
        r'__version__ = "([^"]+)"', (REPO / "guardrails/src/guardrails/_version.py").read_text()
    )[1]
    for app in rendered.values():
        assert not (app / "src/guardrails").exists() and not (app / "tests/guardrails").exists()
        project = tomllib.loads((app / "pyproject.toml").read_text())
        assert f"microapp-guardrails~={version}" in project["project"]["dependencies"]
        dev = project["project"]["optional-dependencies"]["dev"]
        assert f"microapp-guardrails[testing]~={version}" in dev
        mine = [f for f in files(app) if not f.startswith(".venv/")]
        assert not [f for f in mine if f.endswith(".py") and "guardrails" in Path(f).parts]
        assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]


def test_rendered_text_has_no_leftover_template_markers(rendered):
    for app in rendered.values():
        for name in (
            "microapp.yaml",
            "pyproject.toml",
            "README.md",
            "RUNBOOK.md",
            ".copier-answers.yml",
            ".github/workflows/ci.yml",
        ):
            text = re.sub(r"\$\{\{[^}]*\}\}", "", (app / name).read_text())  # CI expressions
            assert "{{" not in text and "{%" not in text, name


def test_default_manifest(rendered):
    data = yaml.safe_load((rendered["defaults"] / "microapp.yaml").read_text())
    assert data["app_id"] == "leave-requests" and data["kind"] == "approval"
    assert data["owner"] == DEFAULTS["owner_email"] and data["team"] == "hr-ops"
    assert data["risk_tier"] == 2
    assert data["sso"]["roles"] == {
        "requester": ["hr-ops"],
        "approver": ["hr-ops-approvers"],
        "admin": ["hr-ops-admins"],
    }
    assert data["lifecycle"]["stage"] == "sandbox"


def test_second_answer_set_lands_verbatim(rendered):
    app = rendered["second"]
    data = yaml.safe_load((app / "microapp.yaml").read_text())
    assert data["name"] == SECOND["app_name"]
    assert data["description"] == SECOND["description"]
    assert data["support"]["contact"] == SECOND["support_channel"]
    assert data["data"] == {
        "classification": "restricted",
        "pii": True,
        "writes": True,
        "retention_days": 30,
    }
    assert data["risk_tier"] == 3
    assert data["sso"]["issuer"] == SECOND["sso_issuer"]
    assert data["sso"]["client_id"] == SECOND["sso_client_id"]
    assert data["sso"]["roles"]["requester"] == ["finance", "procurement"]
    assert data["sso"]["roles"]["admin"] == ["finance-admins", "platform-admins"]
    import datetime as dt

    created = dt.date.fromisoformat(data["lifecycle"]["created"])
    expires = dt.date.fromisoformat(data["lifecycle"]["expires"])
    assert (expires - created).days == 30
    pyproject = tomllib.loads((app / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "purchase-approvals"
    assert pyproject["project"]["description"] == SECOND["description"]
    assert "index" not in pyproject["tool"].get("uv", {})  # none asked: the machine decides


def test_the_company_index_answer_goes_to_uv(copie):
    url = "https://packages.example.org/pypi/simple"
    result = copie.copy(extra_answers={**DEFAULTS, "package_index": url})
    assert result.exit_code == 0, result.exception
    pyproject = tomllib.loads((result.project_dir / "pyproject.toml").read_text())
    assert pyproject["tool"]["uv"]["index"] == [{"name": "company", "url": url}]


def test_answers_file_records_answers_but_not_computed_values(rendered, tmp_path):
    answers = yaml.safe_load((rendered["second"] / ".copier-answers.yml").read_text())
    assert answers["app_id"] == "purchase-approvals" and answers["handles_pii"] is True
    assert "_src_path" in answers
    for computed in ("risk_tier", "created_on", "expires_on", "guardrails_version"):
        assert computed not in answers
    # From a git repository, copier also records the version (the commit or tag) it rendered.
    worker = run_copy(
        str(REPO), tmp_path / "app", data=SECOND, defaults=True, quiet=True, vcs_ref="HEAD"
    )
    assert "_commit" in yaml.safe_load((Path(worker.dst_path) / ".copier-answers.yml").read_text())


def test_owner_files_are_protected_and_template_files_are_not(rendered):
    spec = pathspec.PathSpec.from_lines("gitignore", copier_config()["_skip_if_exists"])
    for app in rendered.values():
        for rel in files(app):
            owner = rel.startswith(
                ("src/app/", "tests/app/", "deploy/values-", "migrations/versions/")
            ) or rel in {
                "app.mk",
                "microapp.yaml",
                "catalog-info.yaml",
            }
            assert spec.match_file(rel) == owner, rel


def test_file_headers_say_who_owns_them(rendered):
    app = rendered["defaults"]
    for rel, path in files(app).items():
        if not rel.endswith((".py", ".html")) or (
            rel.endswith("__init__.py") and path.stat().st_size == 0
        ):
            continue
        head = path.read_text()[:400]
        if rel.startswith(("src/app/", "tests/app/")):
            assert "Yours to edit" in head, rel
        elif rel.startswith("tests/"):
            assert "Managed by the microapp template" in head, rel


def test_no_trust_needed_to_copy(tmp_path):
    """pytest-copie always passes unsafe=True; copier's own API with unsafe=False proves that
    a citizen developer is never asked to trust the template."""
    config = copier_config()
    assert "_tasks" not in config and "_jinja_extensions" not in config
    worker = run_copy(
        str(REPO),
        tmp_path / "app",
        data=DEFAULTS,
        defaults=True,
        unsafe=False,
        quiet=True,
        vcs_ref="HEAD",
    )
    assert (Path(worker.dst_path) / "microapp.yaml").exists()


def render_manifest(answers: dict) -> dict:
    """microapp.yaml as copier renders it for `answers`, in-process: every question's default
    and the computed values from copier.yml, then the shared manifest template with the kind's
    fragment, through Jinja with copier's filters (milliseconds, not a copier run)."""
    return yaml.safe_load(inprocess.render("templates/microapp.yaml.jinja", answers))


@pytest.mark.parametrize(
    ("kind", "classification", "pii", "external"),
    list(
        itertools.product(
            sorted(p.name for p in (REPO / "kinds").iterdir() if p.is_dir()),
            ["public", "internal", "restricted", "regulated"],
            [False, True],
            [False, True],
        )
    ),
)
def test_copy_time_and_run_time_risk_tiers_agree(kind, classification, pii, external):
    """The tier copier writes into microapp.yaml is the one guardrails.core.rules computes
    from that same manifest, for every kind and answer that moves it."""
    data = render_manifest(
        {
            **DEFAULTS,
            "kind": kind,
            "data_classification": classification,
            "handles_pii": pii,
            "incident_api_external": external,
        }
    )
    assert data["risk_tier"] == risk_tier(data), data


def test_the_in_process_render_is_what_copier_renders(rendered):
    """The shortcut above renders exactly what copier does, for every answer set."""
    for name, answers in ANSWER_SETS.items():
        copied = yaml.safe_load((rendered[name] / "microapp.yaml").read_text())
        assert render_manifest(answers) == copied, name
        pyproject = tomllib.loads((rendered[name] / "pyproject.toml").read_text())
        assert tomllib.loads(inprocess.render("templates/pyproject.toml.jinja", answers)) == (
            pyproject
        ), name
        recorded = yaml.safe_load((rendered[name] / ".copier-answers.yml").read_text())
        shortcut = yaml.safe_load(inprocess.render_answers_file(answers))
        for key in ("_commit", "_src_path"):
            recorded.pop(key, None), shortcut.pop(key)
        assert shortcut == recorded, name


def test_each_kind_gets_its_tier_roles_and_connector(rendered):
    dash = yaml.safe_load((rendered["dashboard"] / "microapp.yaml").read_text())
    assert dash["risk_tier"] == 3 and set(dash["sso"]["roles"]) == {
        "viewer",
        "pii-reader",
        "exporter",
        "admin",
    }
    (reports,) = dash["connectors"]
    assert reports["access"] == "read-only" and reports["unmasked_for"] == ["pii-reader"]
    inc = yaml.safe_load((rendered["incident-helper"] / "microapp.yaml").read_text())
    assert inc["risk_tier"] == 3  # PagerDuty is external by default
    (api,) = inc["connectors"]
    assert api["external"] is True and api["base_url"].endswith("/pagerduty")
    assert (
        'PROVIDER = "pagerduty"'
        in (rendered["incident-helper"] / "src/app/provider.py").read_text()
    )


def test_app_code_may_import_only_public_guardrails_names(rendered, tmp_path):
    """The app's ruff config (template-owned) refuses SDK internals and the test kit in app
    code, so an owner's import of `guardrails.core...` fails `make check` with what to use."""
    app = tmp_path / "app"
    shutil.copytree(rendered["defaults"], app, ignore=shutil.ignore_patterns(".venv", ".git"))
    (app / "src/app/sneaky.py").write_text(
        '"""Yours to edit."""\n\nfrom guardrails import audit\n'
        "from guardrails.core.rules import risk_tier\n"
        "from guardrails.testing import login\n\n"
        "__all__ = ['audit', 'login', 'risk_tier']\n"
    )
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", "--no-cache", "src/app/sneaky.py"],
        cwd=app,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 1, lint.stdout
    assert "`guardrails.core` is banned" in lint.stdout and "import public names" in lint.stdout
    assert "`guardrails.testing` is banned" in lint.stdout
    assert "`guardrails.audit` is banned" not in lint.stdout  # the public recorder is fine
