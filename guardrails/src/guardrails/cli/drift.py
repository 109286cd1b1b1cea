"""Guardrail drift: has a template-owned file been edited by hand?

The template ships `.microapp/FILES.sha256`, the SHA-256 of every template-owned file that is
the same in every app (every file of its shared tree that is not a Jinja template: the
policies, the Makefile, the pre-commit config, the Dockerfile, the contract tests, ...) and the
folders it owns whole. `python -m guardrails drift` (part of `make check` and CI) names each
file that differs, is missing, or was added to such a folder (a policy/data file that widens an
allow-list, say), and says how to fix it. It also refuses a
vendored copy of the guardrails (src/guardrails/, tests/guardrails/ from template versions
before 1.0): the app gets them from the microapp-guardrails package, pinned in uv.lock; and it
checks that the installed microapp-guardrails is the locked version with every file as the
wheel's RECORD says (nothing patched in site-packages).

Standard library only. The template repository writes the list from its shared tree, the one
home of which files the template owns (`make hashes`: `python -m guardrails drift --write
templates --extended-by kinds/<kind>/files ...`).
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
OWNED = "# owned: "  # a list line naming a folder whose every file is template-owned
VENDORED = ("src/guardrails", "tests/guardrails")  # copies from template versions before 1.0
IGNORED_PARTS = ("__pycache__", ".pytest_cache", ".ruff_cache")


def _files(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if (
            path.is_file()
            and rel != LIST
            and not path.name.endswith((".pyc", ".pyo"))
            and not any(part in IGNORED_PARTS for part in path.parts)
        ):
            found.append(rel)
    return sorted(found)


def covered_files(shared: Path) -> list[str]:
    """The template's app-independent files: every file of the shared tree that copier copies
    as it is (no Jinja template, no templated name). The tree is the one home of the list."""
    return [
        rel
        for rel in _files(shared)
        if not rel.endswith(".jinja") and "{{" not in rel and "{%" not in rel
    ]


def owned_dirs(shared: Path, covered: list[str], extended_by: list[Path]) -> list[str]:
    """Folders of covered files that the template owns whole: nothing in them is a template
    and no kind adds files there (`extended_by`: the kinds' trees), so any other file in such
    a folder of an app was added by hand (e.g. policy/data/extra-allow-list.json)."""
    folders = {str(Path(rel).parent) for rel in covered} - {"."}
    templated = {str(Path(rel).parent) for rel in _files(shared)} - {
        str(Path(rel).parent) for rel in covered
    }
    owned = []
    for folder in sorted(folders):
        mixed = any(t == folder or t.startswith(folder + "/") for t in templated)
        extended = any((tree / folder).exists() for tree in extended_by)
        if not mixed and not extended:
            owned.append(folder)
    return owned


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render_list(shared: Path, extended_by: list[Path]) -> str:
    """The list the template ships: each app-independent file's SHA-256, and its owned folders."""
    covered = covered_files(shared)
    lines = [f"{digest(shared / rel)}  {rel}" for rel in covered]
    owned = [f"{OWNED}{folder}/" for folder in owned_dirs(shared, covered, extended_by)]
    return "# SHA-256 of template-owned files; checked by `make check`. Do not edit.\n" + "".join(
        f"{line}\n" for line in owned + lines
    )


def read_list(root: Path, list_path: str = LIST) -> dict[str, str]:
    hashes = {}
    for line in (root / list_path).read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            value, rel = line.split("  ", 1)
            hashes[rel] = value
    return hashes


def read_owned(root: Path, list_path: str = LIST) -> list[str]:
    lines = (root / list_path).read_text("utf-8").splitlines()
    return [line.removeprefix(OWNED) for line in lines if line.startswith(OWNED)]


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
    """Compare an app (or the shared tree itself) with the list it carries."""
    expected = read_list(root, list_path)
    actual = {rel: digest(root / rel) for rel in expected if (root / rel).is_file()}
    owned = tuple(read_owned(root, list_path))
    extra = {
        f"{folder}{rel}"
        for folder in owned
        if (root / folder).is_dir()
        for rel in _files(root / folder)
    }
    return Drift(
        modified=sorted(r for r in expected if r in actual and actual[r] != expected[r]),
        missing=sorted(r for r in expected if r not in actual),
        added=sorted(r for r in extra if r not in expected),
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
    parser.add_argument(
        "--extended-by",
        action="append",
        default=[],
        type=Path,
        help="with --write: a tree that adds files to the shared one (each kind's files/)",
    )
    parser.add_argument("--list", default=LIST, help=f"the list, relative to root ({LIST})")
    args = parser.parse_args(argv)
    root = Path(args.root)
    listed = root / args.list
    if args.write:
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text(render_list(root, args.extended_by), "utf-8")
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
