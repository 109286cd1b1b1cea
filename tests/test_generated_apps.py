"""Each rendered app, set up as its owner would (`make setup`), passes its own checks and tests."""

import pytest

from .conftest import run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("answers", ["defaults", "second", "dashboard", "incident-helper"])
def test_make_check_passes(set_up, answers):
    result = run(["make", "check"], cwd=set_up[answers])
    assert "valid" in result.stdout


@pytest.mark.parametrize("answers", ["defaults", "second", "dashboard", "incident-helper"])
def test_apps_own_test_suite_passes(set_up, answers):
    result = run(["make", "test"], cwd=set_up[answers], timeout=900)
    assert " passed" in result.stdout and " failed" not in result.stdout


@pytest.mark.parametrize("answers", ["defaults", "second", "dashboard", "incident-helper"])
def test_pre_commit_hooks_pass_on_the_fresh_app(set_up, answers):
    app = set_up[answers]
    run(["git", "add", "-A"], cwd=app)
    run([str(app / ".venv/bin/pre-commit"), "run", "--all-files"], cwd=app)


def test_make_setup_made_a_git_repo_with_hooks(set_up):
    app = set_up["defaults"]
    assert (app / ".git").is_dir()
    assert (app / ".git/hooks/pre-commit").exists()


def test_make_help_lists_the_commands(set_up):
    out = run(["make", "help"], cwd=set_up["defaults"]).stdout
    for target in ("setup", "dev", "test", "check", "purge"):
        assert f"make {target}" in out


def test_retention_purge_command_runs(set_up, tmp_path):
    app = set_up["defaults"]
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "MICROAPP_AUDIT_FILE": str(tmp_path / "audit.jsonl"),
    }
    out = run(["make", "purge"], cwd=app, env=env).stdout
    assert "purged 0 archived request(s) older than 365 days" in out
