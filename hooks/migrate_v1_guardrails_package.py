"""Migration for template v1.0.0: the guardrails are a package, no longer a vendored copy.

Until 1.0.0 every app carried the guardrails library in `src/guardrails/` (and its tests in
`tests/guardrails/`). From 1.0.0 they are the dependency `microapp-guardrails` (import name
still `guardrails`) and app code may import only its public names. This script, run in the
app's folder after `copier update` has merged the new template (`_migrations` in copier.yml):

1. removes `src/guardrails/` and `tests/guardrails/`; a vendored file the owner edited (its
   SHA-256 differs from `src/guardrails/FILES.sha256`) or added is first copied to
   `migration-1.0.0-edited-guardrails/<path>`, so no work is lost;
2. rewrites the owner's imports of guardrails internals to the public API (`ast` finds the
   import statements; only their text is replaced, so comments and layout elsewhere survive),
   and names file:line of every internal it cannot rewrite, with what to use instead;
3. makes `tests/conftest.py` load the pytest plugin `guardrails.testing.plugin`;
4. upgrades microapp.yaml to schema_version 3: adds `data.writes` (false for a dashboard, true
   otherwise), editing the text in place (block or flow style); a schema_version 1 file also
   gets the 0.2.0 rename (support.channel -> support.contact).

Rules for every script in hooks/: standard library only (it runs under copier's Python, not
the app's), idempotent, edits text in place, prints one line per thing it did, exits non-zero
with a clear message when it cannot migrate. Run it again by hand with
`python <template>/hooks/migrate_v1_guardrails_package.py` from the app folder.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

NAME = "migrate_v1_guardrails_package"
MANIFEST = Path("microapp.yaml")
VENDORED = ("src/guardrails", "tests/guardrails")
HASH_LIST = "src/guardrails/FILES.sha256"
SAVE_DIR = "migration-1.0.0-edited-guardrails"
CONFTEST = Path("tests/conftest.py")
PLUGIN = "guardrails.testing.plugin"
LINE_LENGTH = 100

# Never scanned for owner code: tools' folders anywhere, generated folders at the top.
SKIP_ANYWHERE = {
    ".git", ".hg", ".venv", "venv", ".tox", ".nox", ".eggs", "__pycache__", "node_modules",
    ".mypy_cache", ".ruff_cache", ".pytest_cache",
}  # fmt: skip
SKIP_TOP = {"var", "build", "dist", "site", "htmlcov", SAVE_DIR}
IGNORED_FILES = (".pyc", ".pyo")

PUBLIC = {
    "Actor", "AuditError", "ConnectorError", "Manifest", "Model", "SecretUnavailable", "User",
    "__version__", "audit", "audit_trail", "connector", "create_app", "current_user",
    "db_session", "limit_per_user", "load_manifest", "render", "require_role", "require_user",
    "runtime", "secret", "verify_audit", "testing",
}  # fmt: skip
TESTING_PUBLIC = {
    "LiveApp", "serve", "login", "signed_in", "free_port", "test_settings", "audit_events",
    "provider_id_token", "local_access_token", "demo_users", "bound", "with_free_local_ports",
    "VaultServer", "serve_demo_incidents", "plugin",
}  # fmt: skip
FIXTURES = {"manifest", "idp", "demo", "app_manifest", "app_env", "runtime", "live_app"}
PUBLIC_MODULES = {"guardrails", "guardrails.testing", PLUGIN}
TESTING_MOVED = {
    "guardrails.testing_vault",
    "guardrails.testing_oauth",
    "guardrails.testing_postgres",
}

# (old module, old name) -> (new module, new name)
RENAMES: dict[tuple[str, str], tuple[str, str]] = {
    ("guardrails.runtime", "runtime"): ("guardrails", "runtime"),
    ("guardrails.runtime", "bound"): ("guardrails.testing", "bound"),
    ("guardrails.manifest", "Manifest"): ("guardrails", "Manifest"),
    ("guardrails.manifest", "load_manifest"): ("guardrails", "load_manifest"),
    ("guardrails.audit", "verify_file"): ("guardrails", "verify_audit"),
    ("guardrails.audit_trail", "trail"): ("guardrails", "audit_trail"),
    ("guardrails._version", "__version__"): ("guardrails", "__version__"),
    # Since 1.0.0 an API refuses ID tokens as bearer credentials; tests written before it that
    # called an API with the provider's ID token now send an access token (same arguments).
    ("guardrails.testing", "provider_id_token"): ("guardrails.testing", "local_access_token"),
}
for _module, _names in {
    "guardrails.audit": ("audit", "Actor", "AuditError"),
    "guardrails.sso": ("User", "require_role", "require_user", "current_user"),
    "guardrails.web": ("create_app", "render"),
    "guardrails.db": ("Model", "db_session"),
    "guardrails.secrets": ("secret", "SecretUnavailable"),
    "guardrails.connectors": ("connector", "ConnectorError"),
    "guardrails.ratelimit": ("limit_per_user",),
}.items():
    for _name in _names:
        RENAMES[(_module, _name)] = ("guardrails", _name)

ASK = "or ask the CoE to expose what you need"
NAME_ADVICE = {
    ("guardrails.runtime", "build_runtime"): (
        "internal; use the context manager `with guardrails.runtime() as rt:` "
        "(from guardrails import runtime)"
    ),
    ("guardrails.runtime", "Runtime"): (
        "internal; use the object `with guardrails.runtime() as rt:` yields, " + ASK
    ),
    ("guardrails.config", "Settings"): (
        "internal; guardrails.runtime() reads the settings (in tests: "
        "guardrails.testing.test_settings), " + ASK
    ),
    ("guardrails.audit", "verify_lines"): "internal; use guardrails.verify_audit(path)",
    ("guardrails.audit", "VerifyResult"): (
        "internal; guardrails.verify_audit(path) returns it (.ok, .events, .problems)"
    ),
}
MODULE_ADVICE = {
    "guardrails.config": "settings are internal: guardrails.runtime() reads them, " + ASK,
    "guardrails.policy": "use the command line: python -m guardrails policy check",
    "guardrails.drift": "drift checks are gone with the vendored copy; " + ASK,
    "guardrails.devserver": "use the command line: python -m guardrails dev",
    "guardrails.__main__": "use the command line: python -m guardrails --help",
    "guardrails.vault": "read secrets with guardrails.secret(name)",
    "guardrails.secrets": "read secrets with guardrails.secret(name)",
    "guardrails.http_connector": "use guardrails.connector(name)",
    "guardrails.sql_connector": "use guardrails.connector(name)",
    "guardrails.masking": "masking is declared in microapp.yaml, applied by guardrails.connector()",
    "guardrails.connectors": "use guardrails.connector(name) and guardrails.ConnectorError",
    "guardrails.manifest": "use guardrails.load_manifest() and guardrails.Manifest",
}
DEFAULT_ADVICE = "internal; use a public name (`from guardrails import ...`) " + ASK


def advice(module: str, name: str | None = None) -> str:
    if name is not None and (module, name) in NAME_ADVICE:
        return NAME_ADVICE[(module, name)]
    if module in MODULE_ADVICE:
        return f"internal; {MODULE_ADVICE[module]}"
    return DEFAULT_ADVICE


@dataclass
class Report:
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def act(self, line: str) -> None:
        self.actions.append(line)
        print(f"{NAME}: {line}")

    def warn(self, line: str) -> None:
        self.warnings.append(line)
        print(f"{NAME}: warning: {line}")

    def error(self, line: str) -> None:
        self.errors.append(line)
        print(f"{NAME}: error: {line}", file=sys.stderr)

    def note(self, line: str) -> None:
        print(f"{NAME}: {line}")


def rerun_hint() -> str:
    """How to run this migration again by hand, naming the template when the answers say it."""
    source = "<template>"
    for answers in sorted(Path(".").glob(".copier-answers*.yml")):
        match = re.search(r"^_src_path:\s*['\"]?([^'\"\s#]+)", answers.read_text("utf-8"), re.M)
        if match:
            source = f"<checkout of {match.group(1)} at v1.0.0>"
            break
    return f"python {source}/hooks/{Path(__file__).name} (from the app folder)"


# --- 1. the vendored copy -----------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_hash_list(text: str) -> dict[str, str]:
    hashes = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#") and "  " in line:
            value, rel = line.split("  ", 1)
            hashes[rel.strip()] = value.strip()
    return hashes


def shipped_hashes() -> dict[str, str] | None:
    """The hash list the old template shipped: from the file, else from the last commit."""
    if Path(HASH_LIST).is_file():
        return parse_hash_list(Path(HASH_LIST).read_text("utf-8", errors="replace"))
    try:  # copier's merge may have deleted the list but kept files the owner edited
        result = subprocess.run(
            ["git", "show", f"HEAD:{HASH_LIST}"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_hash_list(result.stdout) if result.returncode == 0 else None


def vendored_files() -> list[str]:
    found = []
    for folder in VENDORED:
        for path in Path(folder).rglob("*"):
            if (
                path.is_file()
                and not path.name.endswith(IGNORED_FILES)
                and not any(part in SKIP_ANYWHERE for part in path.parts)
                and path.as_posix() != HASH_LIST
            ):
                found.append(path.as_posix())
    return sorted(found)


def remove_vendored(report: Report) -> None:
    present = [folder for folder in VENDORED if Path(folder).exists()]
    if not present:
        report.note("vendored guardrails: nothing to remove")
        return
    hashes = shipped_hashes()
    if hashes is None:
        report.warn(
            f"{HASH_LIST} not found (nor in git HEAD): cannot tell edited files from shipped "
            f"ones, so every vendored file is saved to {SAVE_DIR}/"
        )
    for rel in vendored_files():
        if hashes is None:
            why = "kept (no hash list)"
        elif rel not in hashes:
            why = "added by you"
        elif digest(Path(rel)) != hashes[rel]:
            why = "edited by you"
        else:
            continue
        target = Path(SAVE_DIR) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(rel, target)
        report.act(
            f"{rel} ({why}) saved to {target.as_posix()}; guardrails are now a package, "
            "propose changes to them to the CoE"
        )
    for folder in present:
        if Path(folder).is_symlink() or Path(folder).is_file():
            Path(folder).unlink()
        else:
            shutil.rmtree(folder)
        report.act(f"removed the vendored {folder}/ (now the microapp-guardrails package)")


# --- 2. imports in the owner's code --------------------------------------------------------


def owner_python_files() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk("."):
        here = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            rel = (here / name).as_posix().removeprefix("./")
            if (
                name in SKIP_ANYWHERE
                or name.endswith(".egg-info")
                or (here == Path(".") and name in SKIP_TOP)
                or rel in VENDORED
                or (here / name / "pyvenv.cfg").exists()
            ):
                continue
            keep.append(name)
        dirnames[:] = keep
        found += [here / f for f in sorted(filenames) if f.endswith(".py")]
    return found


def char_col(line: str, byte_offset: int) -> int:
    """ast gives UTF-8 byte offsets; turn one into a str index."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="replace"))


def alias_text(name: str, asname: str | None) -> str:
    return name if asname is None or asname == name else f"{name} as {asname}"


def from_import(module: str, names: list[str], indent: str, wrap: bool, nl: str) -> str:
    one = f"from {module} import {', '.join(names)}"
    if not wrap or len(indent) + len(one) <= LINE_LENGTH:
        return one
    inner = "".join(f"{indent}    {n},{nl}" for n in names)
    return f"from {module} import ({nl}{inner}{indent})"


@dataclass
class Edit:
    node: ast.stmt | ast.expr
    statements: list[tuple[str, list[str]]] | None = None  # (module, names); None: literal
    literal: str = ""
    summary: str = ""


def plan_import_from(node: ast.ImportFrom, where: str, report: Report) -> Edit | None:
    module = node.module or ""
    if node.level or not (module == "guardrails" or module.startswith("guardrails.")):
        return None
    groups: dict[str, list[str]] = {}
    changed = False
    for alias in node.names:
        name, asname = alias.name, alias.asname
        if name == "*":
            if module not in PUBLIC_MODULES:
                report.warn(f"{where}: `from {module} import *`: {advice(module)}")
            groups.setdefault(module, []).append("*")
            continue
        new_module, new_name = module, name
        if (module, name) in RENAMES:
            new_module, new_name = RENAMES[(module, name)]
            if new_name != name and asname is None:
                asname = name  # keep the name the code uses
        elif module in TESTING_MOVED:
            new_module = "guardrails.testing"
            if name not in TESTING_PUBLIC:
                report.warn(
                    f"{where}: {name} moved from {module} to guardrails.testing but is not one "
                    "of its documented names; check it still exists " + ASK
                )
        elif module == "guardrails":
            if name not in PUBLIC:
                report.warn(
                    f"{where}: guardrails.{name} is not a public name: use a public one " + ASK
                )
        elif module == "guardrails.testing":
            if name in FIXTURES:
                report.warn(
                    f"{where}: {name} is a fixture of the pytest plugin {PLUGIN} "
                    "(tests/conftest.py loads it): take it as a test argument, do not import it"
                )
            elif name not in TESTING_PUBLIC:
                report.warn(
                    f"{where}: guardrails.testing.{name} is not a documented name; check it "
                    "still exists " + ASK
                )
        elif module != PLUGIN:
            report.warn(f"{where}: `from {module} import {name}` kept: {advice(module, name)}")
        changed |= (new_module, new_name) != (module, name)
        groups.setdefault(new_module, []).append(alias_text(new_name, asname))
    if not changed:
        return None
    statements = list(groups.items())
    shown = "; ".join(f"from {m} import {', '.join(n)}" for m, n in statements)
    return Edit(node, statements=statements, summary=f"`from {module} import ...` -> `{shown}`")


def plan_import(node: ast.Import, where: str, report: Report) -> None:
    for alias in node.names:
        name = alias.name
        if not name.startswith("guardrails.") or name in PUBLIC_MODULES:
            continue
        if name in TESTING_MOVED:
            instead = "use `import guardrails.testing` (its names moved there)"
        else:
            instead = "use `import guardrails` and its public names; " + MODULE_ADVICE.get(
                name, ASK.removeprefix("or ")
            )
        report.warn(f"{where}: `import {alias_text(name, alias.asname)}` kept: {instead}")


def plan_plugins(tree: ast.Module) -> list[Edit]:
    """`pytest_plugins = ["guardrails.testing"]` (or a moved testing module) -> the plugin."""
    edits = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in node.targets
        ):
            for const in ast.walk(node.value):
                if isinstance(const, ast.Constant) and (
                    const.value == "guardrails.testing" or const.value in TESTING_MOVED
                ):
                    edits.append(
                        Edit(
                            const,
                            literal=PLUGIN,
                            summary=f"pytest_plugins: {const.value} -> {PLUGIN}",
                        )
                    )
    return edits


STRING_PATH = re.compile(r"^guardrails\.(\w+)(\.[\w.]+)?$")


def warn_strings(tree: ast.Module, rel: str, report: Report, plugin_nodes: set[int]) -> None:
    """Mock targets and plugin names in strings ("guardrails.secrets.x") are not rewritten."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in plugin_nodes
        ):
            match = STRING_PATH.match(node.value)
            if (
                match
                and match.group(1) != "testing"
                and (match.group(2) or match.group(1) not in PUBLIC)
            ):
                report.warn(
                    f"{rel}:{node.lineno}: the string {node.value!r} names a guardrails internal "
                    "(a mock target?); not rewritten: " + advice(f"guardrails.{match.group(1)}")
                )


def apply_edits(text: str, edits: list[Edit]) -> str:
    lines = re.findall(r"[^\n]*\n|[^\n]+$", text)
    for edit in sorted(edits, key=lambda e: (e.node.lineno, e.node.col_offset), reverse=True):
        node = edit.node
        first, last = node.lineno - 1, node.end_lineno - 1
        start = char_col(lines[first], node.col_offset)
        end = char_col(lines[last], node.end_col_offset)
        prefix, suffix = lines[first][:start], lines[last][end:]
        nl = "\r\n" if lines[first].endswith("\r\n") else "\n"
        if edit.statements is None:  # a string literal: keep its quotes
            old = lines[first][start:end] if first == last else ""
            quote = old[:1] if old[:1] in "'\"" else '"'
            new = f"{quote}{edit.literal}{quote}"
        elif not prefix.strip():  # the statement starts its line
            indent = prefix
            comments = []
            for i in range(first, last + 1):  # comments inside a parenthesised import
                segment = lines[i][start if i == first else 0 : end if i == last else None]
                if "#" in segment:
                    comments.append(segment[segment.index("#") :].rstrip("\r\n"))
            parts = [from_import(m, n, indent, True, nl) for m, n in edit.statements]
            new = "".join(f"{c}{nl}{indent}" for c in comments) + f"{nl}{indent}".join(parts)
        else:  # after `;` or a compound header on the same line
            new = "; ".join(from_import(m, n, "", False, nl) for m, n in edit.statements)
        lines[first : last + 1] = [prefix + new + suffix]
    return "".join(lines)


def _name_key(alias: ast.alias) -> tuple[int, str]:
    """isort's (and ruff's) order of names: CONSTANTS, then Classes, then the rest."""
    name = alias.name
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name


def tidy_guardrails_imports(text: str) -> str:
    """Merge and sort runs of one-line `from guardrails... import` statements, as ruff's isort
    would: the rewrite may leave `from guardrails.testing import bound` beside
    `from guardrails.testing import login`, which `make check` (ruff I001) refuses."""
    lines = re.findall(r"[^\n]*\n|[^\n]+$", text)
    tree = ast.parse(text)
    runs: list[list[ast.ImportFrom]] = []
    previous = None
    for node in tree.body:
        simple = (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "guardrails"
            and node.lineno == node.end_lineno
            and "#" not in lines[node.lineno - 1]
            and not lines[node.lineno - 1][:1].isspace()
        )
        if simple and previous is not None and previous.lineno + 1 == node.lineno and runs:
            runs[-1].append(node)
        elif simple:
            runs.append([node])
        previous = node if simple else None
    for run in reversed(runs):
        merged: dict[str, list[ast.alias]] = {}
        for node in run:
            merged.setdefault(node.module, []).extend(node.names)
        nl = "\r\n" if lines[run[0].lineno - 1].endswith("\r\n") else "\n"
        new = []
        for module in sorted(merged):
            unique = {(a.name, a.asname): a for a in merged[module]}.values()
            names = [alias_text(a.name, a.asname) for a in sorted(unique, key=_name_key)]
            new.append(from_import(module, names, "", True, nl) + nl)
        lines[run[0].lineno - 1 : run[-1].lineno] = new
    return "".join(lines)


def read_source(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return handle.read()
    except (UnicodeDecodeError, OSError):
        return None


def write_source(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def plan_file(tree: ast.Module, rel: str, report: Report) -> tuple[list[Edit], list[Edit]]:
    """The import rewrites and the pytest_plugins rewrites of one file; warns about the rest."""
    edits: list[Edit] = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom):
            edit = plan_import_from(node, where, report)
            if edit:
                edits.append(edit)
        elif isinstance(node, ast.Import):
            plan_import(node, where, report)
    plugin_edits = plan_plugins(tree) if rel.rpartition("/")[2] == "conftest.py" else []
    warn_strings(tree, rel, report, {id(e.node) for e in plugin_edits})
    return edits, plugin_edits


class Silent(Report):
    def warn(self, line: str) -> None:
        self.warnings.append(line)


def migrate_python(report: Report) -> tuple[int, str]:
    """Rewrite imports; return (files changed, tests/conftest.py: rewritten|present|missing)."""
    changed_files = 0
    plugin = "missing"
    for path in owner_python_files():
        rel = path.as_posix().removeprefix("./")
        text = read_source(path)
        if text is None or "guardrails" not in text:
            continue
        try:
            tree = ast.parse(text, filename=rel)
        except SyntaxError as exc:
            report.error(
                f"{rel}:{exc.lineno}: cannot parse ({exc.msg}; merge conflict markers?); fix it, "
                f"then run this migration again: {rerun_hint()}"
            )
            continue
        edits, plugin_edits = plan_file(tree, rel, Silent())
        if Path(rel) == CONFTEST:
            plugin = "rewritten" if plugin_edits else "present" if PLUGIN in text else "missing"
        edits += plugin_edits
        if edits:
            new = apply_edits(text, edits)
            try:
                new = tidy_guardrails_imports(new)
                tree = ast.parse(new, filename=rel)
            except SyntaxError as exc:  # a bug here must not break the owner's file
                report.error(
                    f"{rel}: rewriting its imports would not parse ({exc.msg}); left as is"
                )
                continue
            write_source(path, new)
            changed_files += 1
            for edit in sorted(edits, key=lambda e: e.node.lineno):
                report.act(f"{rel}:{edit.node.lineno}: {edit.summary}")
        # what is left, with the line numbers of the file as it is now
        left, left_plugins = plan_file(tree, rel, report)
        if left or left_plugins:  # the rewrite is not idempotent: a bug, say so
            report.error(f"{rel}: imports still to rewrite after rewriting; please report this")
    return changed_files, plugin


# --- 4. microapp.yaml -----------------------------------------------------------------------


# The manifest's text migrations: guardrails/core/manifest_migrations.py of this template
# checkout, as the 0.2.0 script beside this one loads it (one loader, one home of the steps).
sys.dont_write_bytecode = True  # leave no __pycache__ in the template checkout
_V2 = Path(__file__).resolve().parent / "migrate_manifest_v2.py"
_SPEC = importlib.util.spec_from_file_location("migrate_manifest_v2", _V2)
_SPEC.loader.exec_module(_V2_MODULE := importlib.util.module_from_spec(_SPEC))
_MIGRATIONS = _V2_MODULE._MIGRATIONS
manifest_conflicts = _MIGRATIONS.manifest_conflicts
migrate_manifest = _MIGRATIONS.migrate_manifest


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    if not MANIFEST.is_file():
        print(
            f"{NAME}: no {MANIFEST} in {Path.cwd()}: run this from the app's folder",
            file=sys.stderr,
        )
        return 1
    manifest_text = MANIFEST.read_text("utf-8")
    if manifest_conflicts(manifest_text):
        print(
            f"{NAME}: microapp.yaml has merge conflict markers (<<<<<<< ======= >>>>>>>); "
            f"nothing was changed. Resolve them, then run: {rerun_hint()}",
            file=sys.stderr,
        )
        return 1
    try:  # plan the manifest first, so a refusal leaves everything as it was
        new_manifest, manifest_done = migrate_manifest(manifest_text)
    except ValueError as exc:
        print(f"{NAME}: {exc}; nothing was changed. Then run: {rerun_hint()}", file=sys.stderr)
        return 1

    report = Report()
    remove_vendored(report)
    changed_files, plugin = migrate_python(report)
    if plugin == "present":
        report.note(f"{CONFTEST.as_posix()}: already loads {PLUGIN}")
    elif plugin == "missing" and CONFTEST.is_file():
        report.warn(f'{CONFTEST.as_posix()} does not load {PLUGIN}: pytest_plugins = ["{PLUGIN}"]')
    if manifest_done:
        MANIFEST.write_text(new_manifest, "utf-8")
        report.act(manifest_done)
    else:
        report.note("microapp.yaml: already at schema_version 3")

    if report.errors:
        print(
            f"{NAME}: {len(report.errors)} problem(s) above; after fixing them run: {rerun_hint()}",
            file=sys.stderr,
        )
        return 1
    tail = (
        f"; {len(report.warnings)} warning(s) above need your attention" if report.warnings else ""
    )
    if not report.actions:
        print(f"{NAME}: nothing to do: already migrated to 1.0.0{tail}")
    else:
        hint = "; run `make fmt` to re-sort the imports" if changed_files else ""
        print(f"{NAME}: done: {len(report.actions)} change(s){hint}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
