"""Shared fixtures of the template repository's tests.

Answer sets, the render of each (pytest-copie), and generated apps set up as a user would set
them up (`make setup` in a fresh folder: own .venv, pip install, git init, pre-commit hooks).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
KINDS = REPO / "kinds"
GUARDRAILS = REPO / "guardrails"
BIN = Path(sys.executable).parent
UV = shutil.which("uv", path=str(BIN)) or shutil.which("uv") or "uv"

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


class _IncludeLoader(yaml.SafeLoader):
    """Reads copier.yml as copier does: several documents, `!include <glob>` among them."""


_IncludeLoader.add_constructor(
    "!include", lambda loader, node: {"!include": loader.construct_scalar(node)}
)


def copier_config(root: Path = REPO) -> dict:
    """copier.yml with every `!include` merged in, in order (the last definition wins)."""
    merged: dict = {}
    for doc in yaml.load_all((root / "copier.yml").read_text(), Loader=_IncludeLoader):
        if doc and "!include" in doc:
            for path in sorted(root.glob(doc["!include"])):
                merged.update(yaml.safe_load(path.read_text()) or {})
        elif doc:
            merged.update(doc)
    return merged


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


def working_tree_files(root: Path = REPO) -> list[str]:
    """Tracked and new (not ignored) files of `root`: what a commit would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {f for f in listed.split("\0") if f}
    return sorted(f for f in names if (root / f).is_symlink() or (root / f).is_file())


def snapshot(dst: Path, root: Path = REPO) -> Path:
    """Copy this working tree (symlinks kept, nothing git-ignored) into `dst`."""
    for rel in working_tree_files(root):
        src, target = root / rel, dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(src.readlink())
        else:
            shutil.copy2(src, target)
    return dst


def pytest_configure(config):
    """pytest-copie renders a plain snapshot of the working tree: copier then skips the git
    clone and commit it makes of a dirty repository, which halves the cost of each copy.
    Tests that need git (versions, `_commit`) use REPO itself. And progress() gets the
    terminal (capture is suspended while pytest configures)."""
    _TERMINAL[0] = os.fdopen(os.dup(2), "w", buffering=1)
    if getattr(config.option, "template", None) and Path(config.option.template).resolve() == REPO:
        folder = Path(tempfile.mkdtemp(prefix="microapp-template-"))
        config.option.template = str(snapshot(folder / "microapp-templates"))
        config._microapp_snapshot = folder


# `make test` runs this suite in pytest-xdist workers, handing out one test at a time, except
# these files, each of which runs whole in one worker (why, beside each).
WHOLE_FILES = {
    "tests/test_attacks.py": "its last test compares docs/security.md with what all its checks saw",
    "tests/test_e2e.py": "the incident helper it starts runs its demo service on port 9500",
    "tests/test_fleet.py": "its module fixture generates 20 apps: once, not once per worker",
}


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # a pytest-xdist hook (absent without it)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":  # `-n` alone; any --dist asked for is xdist's own
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduler(LoadScopeScheduling):
        """xdist's `loadscope` with a scope per test, but one per file for WHOLE_FILES."""

        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return file if file in WHOLE_FILES else nodeid

    return Scheduler(config, log)


def pytest_unconfigure(config):
    folder = getattr(config, "_microapp_snapshot", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


# The terminal's stderr, kept before pytest captures file descriptor 2 around each test
# (sys.__stderr__ writes to that descriptor, so its lines would be captured, not shown).
_TERMINAL: list = [sys.__stderr__]


def progress(message: str) -> None:
    """A line on the terminal even under pytest's capture: long steps are never silent."""
    _TERMINAL[0].write(f"    [{time.strftime('%H:%M:%S')}] {message}\n")
    _TERMINAL[0].flush()


HEARTBEAT_SECONDS = 10


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A line every HEARTBEAT_SECONDS while one test (its fixtures included) runs: which test,
    its number in the run, how long so far. A slow step never looks like a hang."""
    number = item.session.items.index(item) + 1 if item in item.session.items else 0
    done = threading.Event()

    def beat() -> None:
        started = time.monotonic()
        while not done.wait(HEARTBEAT_SECONDS):
            progress(
                f"still in {item.nodeid} (test {number} of {len(item.session.items)}), "
                f"{time.monotonic() - started:.0f} s"
            )

    thread = threading.Thread(target=beat, name="test-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """The guardrails wheel built once from this working tree: what a company index would serve."""
    out = tmp_path_factory.mktemp("wheelhouse")
    progress("building the microapp-guardrails wheel from guardrails/")
    run([UV, "build", "--quiet", "--wheel", "--out-dir", str(out), str(GUARDRAILS)], cwd=REPO)
    return out


@contextlib.contextmanager
def serve_package_index(folder: Path, uploads: bool = False) -> Iterator[str]:
    """A real package index (pypiserver, PEP 503) over `folder` on a free local port; yields
    its base URL. With `uploads`, it takes uploads without a password (`make publish`)."""
    pytest.importorskip("pypiserver", reason="pypiserver (a dev dependency) is not installed")
    from guardrails.testing import free_port  # the test kit's; imported here, it is slow to load

    port = free_port()
    access = ("-a", ".", "-P", ".") if uploads else ()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port)),
            *(*access, "--disable-fallback", "--log-stream", "none", str(folder)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/simple/", timeout=2).close()  # noqa: S310 (local)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("the local package index (pypiserver) did not start")
            time.sleep(0.2)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def package_index(wheelhouse) -> Iterator[str]:
    """The wheelhouse served by a real package index: what the company index is to apps.
    Locked from an index, uv.lock records the SDK's URL and hashes."""
    with serve_package_index(wheelhouse) as url:
        yield f"{url}/simple/"


def setup_app(app: Path, index: str) -> None:
    """`make setup` in a generated app, as its owner would, with the guardrails from the
    package index `index` (uv's cache is shared: the second app onward installs in seconds)."""
    run(
        ["make", "setup", f"PYTHON={sys.executable}", f"PACKAGE_INDEX={index}", f"UV={UV}"],
        cwd=app,
        timeout=900,
    )


@pytest.fixture(scope="session")
def set_up(rendered, package_index) -> dict[str, Path]:
    """The rendered apps after `make setup` (uv.lock, .venv, git init, hooks)."""
    for number, (name, path) in enumerate(rendered.items(), start=1):
        progress(f"make setup in the {name} app ({number}/{len(rendered)})")
        setup_app(path, package_index)
    return rendered
