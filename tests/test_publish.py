"""The guardrails SDK is a package: built from guardrails/, uploaded to a package index, and
installed from that index by name and version - as apps get it (`make publish`).

A real local index (pypiserver) stands in for the company's; the SDK's dependencies come from
the normal default index, so the local index is added in front of it, never instead of it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GUARDRAILS = REPO / "guardrails"
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv") or "uv"

pytestmark = pytest.mark.slow


def version() -> str:
    namespace: dict[str, str] = {}
    exec((GUARDRAILS / "src/guardrails/_version.py").read_text(), namespace)  # noqa: S102
    return namespace["__version__"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs
    )
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(UV, "build", GUARDRAILS, "-o", out)
    (found,) = out.glob("microapp_guardrails-*.whl")
    return found


@pytest.fixture
def index(tmp_path):
    """A local package index (pypiserver) that accepts uploads without a password."""
    pytest.importorskip("pypiserver", reason="pypiserver (a dev dependency) is not installed")
    packages = tmp_path / "packages"
    packages.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port)),
            *("-a", ".", "-P", ".", "--log-stream", "none", str(packages)),
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
        except (urllib.error.URLError, ConnectionError):
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("the local package index did not start")
            time.sleep(0.2)
    try:
        yield url, packages
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_wheel_carries_its_data_files_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name == f"microapp_guardrails-{version()}-py3-none-any.whl"
    for data in (
        "guardrails/templates/base.html",
        "guardrails/templates/error.html",
        "guardrails/static/app.css",
        "guardrails/core/manifest.schema.json",
    ):
        assert data in names
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
    assert "guardrails/testing/plugin.py" in names  # the test kit ships (extra: testing)


def test_the_sdk_is_published_and_installs_from_the_index(wheel, index, tmp_path):
    url, packages = index
    credentials = {"UV_PUBLISH_USERNAME": "ci", "UV_PUBLISH_PASSWORD": "ci"}
    run("make", "publish", f"INDEX_URL={url}/", cwd=REPO, env={**os.environ, **credentials})
    assert (packages / wheel.name).is_file()  # the wheel `make publish` built is the same one

    venv = tmp_path / "venv"
    run(UV, "venv", venv, "--python", sys.executable)
    python = venv / "bin" / "python"
    run(
        UV,
        "pip",
        "install",
        "--python",
        python,
        "--index",
        f"{url}/simple/",  # first: the SDK comes from here; its dependencies from the default
        f"microapp-guardrails=={version()}",
    )
    shown = run(
        python,
        "-c",
        "import guardrails, importlib.metadata as m, pathlib;"
        "print(guardrails.__version__, m.version('microapp-guardrails'));"
        "print(pathlib.Path(guardrails.__file__).parent)",
    ).stdout.split()
    assert shown[:2] == [version(), version()]
    assert Path(shown[2]).is_relative_to(venv)  # the installed copy, not the working tree
    checked = run(python, "-m", "guardrails", "manifest", "schema").stdout.strip()
    assert Path(checked).is_file()
