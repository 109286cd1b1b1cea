"""Guardrail drift: has a template-owned file been edited by hand?

The template ships `.microapp/FILES.sha256`, the SHA-256 of every template-owned file that is
the same in every app (the policies, the Makefile, the pre-commit config, the Dockerfile, the
tests' conftest). `python -m guardrails drift` (part of `make check` and CI) names each file
that differs, is missing, or was added to policy/, and says how to fix it. It also refuses a
vendored copy of the guardrails (src/guardrails/, tests/guardrails/ from template versions
before 1.0): the app gets them from the microapp-guardrails package, pinned in uv.lock; and it
checks that the installed microapp-guardrails is the locked version with every file as the
wheel's RECORD says (nothing patched in site-packages).

Standard library only: the template repository runs this file as a script to write the list
(`python -m guardrails.cli.drift --write <rendered app>`, or `--list` to choose the file).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

LIST = ".microapp/FILES.sha256"
COVERED_DIRS = ("policy", "tests/contract")
VENDORED = ("src/guardrails", "tests/guardrails")  # copies from template versions before 1.0
COVERED_FILES = (
    "tests/conftest.py",
    "tests/__init__.py",
    "Makefile",
    ".pre-commit-config.yaml",
    ".secrets.baseline",
    "Dockerfile",
    ".dockerignore",
)
IGNORED_PARTS = ("__pycache__", ".pytest_cache", ".ruff_cache")


def covered_files(root: Path) -> list[str]:
    """Template-owned, app-independent files under `root`, as sorted POSIX paths."""
    found = [f for f in COVERED_FILES if (root / f).is_file()]
    for folder in COVERED_DIRS:
        for path in (root / folder).rglob("*"):
            rel = path.relative_to(root).as_posix()
            if (
                path.is_file()
                and rel != LIST
                and not path.name.endswith((".pyc", ".pyo"))
                and not any(part in IGNORED_PARTS for part in path.parts)
            ):
                found.append(rel)
    return sorted(found)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compute(root: Path) -> dict[str, str]:
    return {rel: digest(root / rel) for rel in covered_files(root)}


def render_list(hashes: dict[str, str]) -> str:
    lines = [f"{h}  {rel}" for rel, h in sorted(hashes.items())]
    return (
        "# SHA-256 of template-owned files; checked by `make check`. Do not edit.\n"
        + "\n".join(lines)
        + "\n"
    )


def read_list(root: Path, list_path: str = LIST) -> dict[str, str]:
    hashes = {}
    for line in (root / list_path).read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            value, rel = line.split("  ", 1)
            hashes[rel] = value
    return hashes


@dataclass
class Drift:
    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    vendored: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.modified or self.missing or self.added or self.vendored)


def check(root: Path, list_path: str = LIST) -> Drift:
    expected, actual = read_list(root, list_path), compute(root)
    return Drift(
        modified=sorted(r for r in expected if r in actual and actual[r] != expected[r]),
        missing=sorted(r for r in expected if r not in actual),
        added=sorted(r for r in actual if r not in expected and r.startswith("policy/")),
        vendored=sorted(f"{d}/" for d in VENDORED if (root / d).is_dir()),
    )


DISTRIBUTION = "microapp-guardrails"


def locked_version(root: Path) -> str | None:
    """The microapp-guardrails version pinned in `root`/uv.lock (None: not locked there)."""
    lock = tomllib.loads((root / "uv.lock").read_text("utf-8"))
    for package in lock.get("package", []):
        if package.get("name") == DISTRIBUTION:
            return package.get("version")
    return None


def installed_problems(root: Path, locked: str | None) -> list[str]:
    """Is the microapp-guardrails of this interpreter the one uv.lock pins (`locked`, from
    `locked_version(root)`), unedited?"""
    if not (root / "uv.lock").is_file():
        return ["uv.lock is missing: run `make setup` and commit uv.lock"]
    if locked is None:
        return [f"uv.lock does not pin {DISTRIBUTION}: run `make setup` and commit uv.lock"]
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return [f"{DISTRIBUTION} is not installed: run `make setup`"]
    if dist.version != locked:
        return [
            f"{DISTRIBUTION} {dist.version} is installed but uv.lock pins {locked}: "
            "run `make setup`"
        ]
    edited = []
    for file in dist.files or []:
        if file.hash is None or file.hash.mode != "sha256":
            continue
        try:
            data = file.read_binary()
        except OSError:
            edited.append(f"{file} (missing)")
            continue
        digest_ = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if digest_ != file.hash.value:
            edited.append(str(file))
    return [
        f"{name} of the installed {DISTRIBUTION} was edited: run `make setup` to reinstall it"
        for name in edited
    ]


def report(drift: Drift, out=None) -> None:
    out = out or sys.stderr
    count = len(drift.modified) + len(drift.missing) + len(drift.added)
    if drift.vendored:
        print(
            "A vendored copy of the guardrails is present: "
            + ", ".join(drift.vendored)
            + ". Delete it: the app uses the microapp-guardrails package (pinned in uv.lock).",
            file=out,
        )
        if not count:
            return
    print(f"Guardrail drift: {count} template-owned file(s) differ from the template:", file=out)
    for label, names in (
        ("edited", drift.modified),
        ("missing", drift.missing),
        ("added", drift.added),
    ):
        for name in names:
            print(f"  {label:<8} {name}", file=out)
    print(
        "These files are managed by the CoE template and are replaced by `copier update`.\n"
        "To fix: undo the change (git checkout -- <file>, or delete an added file), or, if\n"
        "the app needs it, propose the change to the CoE so every app gets it.",
        file=out,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=".", help="app (or templates/) folder")
    parser.add_argument("--write", action="store_true", help="write the list (template repo)")
    parser.add_argument("--list", default=LIST, help=f"the list, relative to root ({LIST})")
    args = parser.parse_args(argv)
    root = Path(args.root)
    listed = root / args.list
    if args.write:
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text(render_list(compute(root)), "utf-8")
        print(f"wrote {listed}")
        return 0
    if not listed.exists():
        print(f"{listed} is missing: run `copier update` to restore it.", file=sys.stderr)
        return 1
    drift = check(root, args.list)
    locked = locked_version(root) if (root / "uv.lock").is_file() else None
    problems = installed_problems(root, locked)
    for problem in problems:
        print(f"Guardrails: {problem}.", file=sys.stderr)
    if drift.clean and not problems:
        print(
            f"Guardrails: {DISTRIBUTION} {locked} as locked; "
            f"{len(read_list(root, args.list))} template-owned files unchanged."
        )
        return 0
    if not drift.clean:
        report(drift)
    return 1


if __name__ == "__main__":
    sys.exit(main())
