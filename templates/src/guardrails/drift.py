# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
"""Guardrail drift: has a template-owned file been edited by hand?

The template ships `src/guardrails/FILES.sha256`, the SHA-256 of every template-owned file
that is the same in every app (this package, its tests, the policies, the Makefile, the
pre-commit config, the Dockerfile).
`python -m guardrails drift` (part of `make check` and CI) names each file that differs,
is missing, or was added inside the package, and says how to fix it.

Standard library only: the template repository runs this file as a script to write the list
(`python templates/src/guardrails/drift.py --write templates`).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

LIST = "src/guardrails/FILES.sha256"
COVERED_DIRS = ("src/guardrails", "tests/guardrails", "policy")
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


def read_list(root: Path) -> dict[str, str]:
    hashes = {}
    for line in (root / LIST).read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            value, rel = line.split("  ", 1)
            hashes[rel] = value
    return hashes


@dataclass
class Drift:
    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.modified or self.missing or self.added)


def check(root: Path) -> Drift:
    expected, actual = read_list(root), compute(root)
    return Drift(
        modified=sorted(r for r in expected if r in actual and actual[r] != expected[r]),
        missing=sorted(r for r in expected if r not in actual),
        added=sorted(
            r for r in actual if r not in expected and r.startswith(("src/guardrails/", "policy/"))
        ),
    )


def report(drift: Drift, out=None) -> None:
    out = out or sys.stderr
    count = len(drift.modified) + len(drift.missing) + len(drift.added)
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
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.write:
        (root / LIST).write_text(render_list(compute(root)), "utf-8")
        print(f"wrote {root / LIST}")
        return 0
    if not (root / LIST).exists():
        print(f"{root / LIST} is missing: run `copier update` to restore it.", file=sys.stderr)
        return 1
    drift = check(root)
    if drift.clean:
        print(f"Guardrails: {len(read_list(root))} template-owned files unchanged.")
        return 0
    report(drift)
    return 1


if __name__ == "__main__":
    sys.exit(main())
