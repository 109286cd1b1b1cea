"""The guardrails SDK is a package: built from guardrails/, uploaded to a package index, and
installed from that index by name and version - as apps get it (`make publish`).

A real local index (pypiserver) stands in for the company's; the SDK's dependencies come from
the normal default index, so the local index is added in front of it, never instead of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import serve_package_index

REPO = Path(__file__).resolve().parent.parent
GUARDRAILS = REPO / "guardrails"
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv") or "uv"

pytestmark = pytest.mark.slow


def version() -> str:
    namespace: dict[str, str] = {}
    exec((GUARDRAILS / "src/guardrails/_version.py").read_text(), namespace)  # noqa: S102
    return namespace["__version__"]


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
    packages = tmp_path / "packages"
    packages.mkdir()
    with serve_package_index(packages, uploads=True) as url:
        yield url, packages


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
