"""Shared fixtures of the template repository's tests.

Answer sets, the render of each (pytest-copie), and generated apps set up as a user would set
them up (`make setup` in a fresh folder: own .venv, pip install, git init, pre-commit hooks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
GUARDRAILS = TEMPLATES / "src" / "guardrails"

DEFAULTS = {"app_name": "Leave requests", "owner_email": "hr-ops@example.com"}
SECOND = {
    "kind": "approval",
    "app_name": "Purchase approvals",
    "app_id": "purchase-approvals",
    "owner_email": "finance.lead@corp.example.org",
    "team": "finance",
    "description": 'Purchases over 1 000 € need a lead\'s "yes": one place, one trail',
    "support_channel": "https://chat.example.org/finance-help",
    "data_classification": "restricted",
    "handles_pii": True,
    "retention_days": 30,
    "expiry_days": 30,
    "sso_issuer": "https://login.example.org/realms/corp",
    "sso_client_id": "purchase-approvals-web",
    "requester_groups": "finance, procurement",
    "approver_groups": "finance-leads",
    "admin_groups": "finance-admins,platform-admins",
}
DASHBOARD = {**DEFAULTS, "kind": "dashboard", "app_name": "Support dashboard"}
INCIDENTS = {
    **DEFAULTS,
    "kind": "incident-helper",
    "app_name": "On-call helper",
    "incident_provider": "pagerduty",
}
ANSWER_SETS = {
    "defaults": DEFAULTS,
    "second": SECOND,
    "dashboard": DASHBOARD,
    "incident-helper": INCIDENTS,
}


def run(cmd: list[str], cwd: Path, timeout: int = 600, check: bool = True, **kw):
    """Run a command, echoing its output into the test report when it fails."""
    env = {**os.environ, **kw.pop("env", {})}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}) in {cwd}\n"
            f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


@pytest.fixture(scope="session")
def rendered(copie_session) -> dict[str, Path]:
    """Each answer set rendered once per session by pytest-copie."""
    out = {}
    for name, answers in ANSWER_SETS.items():
        result = copie_session.copy(extra_answers=answers)
        assert result.exit_code == 0, result.exception
        out[name] = result.project_dir
    return out


@pytest.fixture(scope="session")
def set_up(rendered) -> dict[str, Path]:
    """The rendered apps after `make setup` (venv, install, git init, hooks)."""
    for path in rendered.values():
        run(["make", "setup", f"PYTHON={sys.executable}"], cwd=path, timeout=900)
    return rendered
