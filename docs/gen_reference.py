"""Reference lists generated from the code, so the docs cannot drift from it.

Used two ways:

- as a mkdocs hook (`hooks: [docs/gen_reference.py]` in mkdocs.yml): a hand-written page
  marks where a list goes with a line `<!-- generated: NAME -->`, and `on_page_markdown`
  puts the list there at build time. Nothing generated is ever stored in the repository.
- as a script, to read what the build would insert: `python docs/gen_reference.py [NAME ...]`.

NAME is a key of GENERATORS (an unknown NAME is a build warning). Sources, read from the
repository root:

- questions, computed-values, answer-usage: copier.yml and each kinds/*/questions.yml it
  includes; the Jinja of templates/ and kinds/ (which files use which answer);
- manifest-fields, manifest-template: the manifest JSON Schema of the guardrails package;
  templates/microapp.yaml.jinja and kinds/*/manifest.yaml.jinja;
- risk-tier-rules: the docstring of `risk_tier()` in guardrails/core/rules.py;
- api, testing-api: `guardrails.__all__` and `guardrails.testing.__all__`, each name's
  docstring (first paragraph), read by importing guardrails/src in a subprocess (names whose
  import needs a dependency the docs' Python lacks are read from the source with `ast`);
- fixtures: the pytest fixtures of guardrails/testing/plugin.py;
- audit-actions: each `audit.record(...)` call in the guardrails and kinds/*/files;
- cli: `python -m guardrails --help` and each subcommand's `--help`;
- file-ownership: copier.yml's `_skip_if_exists` and `_exclude`, a walk of the shared tree
  (templates/) and of each kinds/*/files, and the drift list the template ships
  (templates/.microapp/FILES.sha256).

The repository layout may be in flux: a missing source gives a page section that says what is
missing, never a crash. Set MICROAPP_DOCS_REQUIRE_SOURCES=1 to turn such a note into a mkdocs
warning (so `mkdocs build --strict` fails on it).
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import glob
import html
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("mkdocs.hooks.gen_reference")

MARKER = re.compile(r"^<!--\s*generated:\s*([a-z-]+)\s*-->\s*$", re.MULTILINE)
SCHEMA_PATHS = (
    "guardrails/src/guardrails/core/manifest.schema.json",
    "guardrails/src/guardrails/manifest.schema.json",
    "templates/src/guardrails/manifest.schema.json",
)
GUARDRAILS_SRC = ROOT / "guardrails" / "src"


# ------------------------------------------------------------------------------ helpers


class MissingSource(Exception):
    """A source file or tool the generator needs is not there (yet)."""


def missing(what: str) -> str:
    """The text put on a page instead of a list whose source is missing."""
    if os.environ.get("MICROAPP_DOCS_REQUIRE_SOURCES"):
        log.warning("generated reference: %s", what)
    else:
        log.info("generated reference: %s", what)
    return f'!!! warning "Not generated"\n    {what}\n'


def code(value: Any) -> str:
    """Inline code safe inside a Markdown table cell (no `|`, no line break)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;") + "</code>"


def cell(text: Any) -> str:
    """Plain text safe inside a Markdown table cell."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "&#124;")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rel(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return " ".join(textwrap.dedent(doc).strip().split("\n\n")[0].split())


# ------------------------------------------------------------------------------ copier.yml


class _Include(str):
    """The pattern of a `!include` document in copier.yml."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!include", lambda loader, node: _Include(loader.construct_scalar(node)))


def load_copier() -> tuple[dict, list[tuple[Path, dict]]]:
    """copier.yml's settings and its question documents, each with the file it came from."""
    path = ROOT / "copier.yml"
    if not path.is_file():
        raise MissingSource("copier.yml is missing at the repository root.")
    settings: dict = {}
    documents: list[tuple[Path, dict]] = []

    def read(file: Path) -> None:
        for doc in yaml.load_all(file.read_text(encoding="utf-8"), Loader=_Loader):
            if isinstance(doc, _Include):
                for match in sorted(glob.glob(str(ROOT / doc))):
                    read(Path(match))
            elif isinstance(doc, dict):
                questions = {k: v for k, v in doc.items() if not str(k).startswith("_")}
                settings.update({k: v for k, v in doc.items() if str(k).startswith("_")})
                if questions:
                    documents.append((file, questions))

    read(path)
    return settings, documents


def _type(spec: dict) -> str:
    kind = spec.get("type", "str")
    return f"{kind}, choice" if spec.get("choices") else kind


def _choices(spec: dict) -> str:
    choices = spec.get("choices")
    if not choices:
        return ""
    if isinstance(choices, dict):
        items = [
            f"{code(value)}: {cell(str(label).split(':', 1)[-1].strip())}"
            if str(label).split(":", 1)[0].strip() == str(value)
            else f"{code(value)}: {cell(label)}"
            for label, value in choices.items()
        ]
    else:
        items = [code(value) for value in choices]
    return "<br>".join(items)


def _asked(spec: dict) -> str:
    when = spec.get("when", True)
    if when is True:
        return "always"
    kinds = re.findall(r"kind\s*==\s*['\"]([a-z0-9-]+)['\"]", str(when))
    if kinds and re.fullmatch(
        r"\{\{\s*(kind\s*==\s*['\"][a-z0-9-]+['\"](\s*or\s*)?)+\s*\}\}", str(when).strip()
    ):
        return "kind " + ", ".join(code(k) for k in kinds)
    return code(when)


def _default(spec: dict) -> str:
    if "default" not in spec:
        return "none: must be typed"
    return code(spec["default"])


def gen_questions() -> str:
    try:
        _settings, documents = load_copier()
    except MissingSource as exc:
        return missing(str(exc))
    out: list[str] = []
    seen: set[Path] = set()
    for file, questions in documents:
        asked = {
            k: v for k, v in questions.items() if isinstance(v, dict) and v.get("when") is not False
        }
        if not asked:
            continue
        title = f"`{rel(file)}`" + (" (continued)" if file in seen else "")
        if file.parent.parent.name == "kinds":
            title = f"Kind `{file.parent.name}`: " + title
        seen.add(file)
        out.append(f"### {title}\n")
        rows = [
            [
                code(key),
                cell(_type(spec)),
                _asked(spec),
                _default(spec),
                cell(spec.get("help", "")) + ("<br>" + _choices(spec) if _choices(spec) else ""),
                "yes" if spec.get("validator") else "",
            ]
            for key, spec in asked.items()
        ]
        out.append(
            table(["Key", "Type", "Asked", "Default", "Question and choices", "Validated"], rows)
        )
    return "\n".join(out) if out else missing("copier.yml defines no questions.")


def gen_computed_values() -> str:
    try:
        _settings, documents = load_copier()
    except MissingSource as exc:
        return missing(str(exc))
    out: list[str] = []
    for file, questions in documents:
        for key, spec in questions.items():
            if isinstance(spec, dict) and spec.get("when") is False:
                default = str(spec.get("default", "")).strip()
                out.append(
                    f"`{key}` ({spec.get('type', 'str')}, from `{rel(file)}`)\n\n"
                    f"```jinja\n{default}\n```\n"
                )
    return "\n".join(out) if out else "No computed values.\n"


# ------------------------------------------------------------------------------ schema


def schema_path() -> Path | None:
    for candidate in SCHEMA_PATHS:
        if (ROOT / candidate).is_file():
            return ROOT / candidate
    return None


def _rule(node: dict, defs: dict) -> str:
    node = _deref(node, defs)
    parts: list[str] = []
    if "const" in node:
        parts.append("exactly " + code(node["const"]))
    if "enum" in node:
        parts.append("one of " + ", ".join(code(v) for v in node["enum"]))
    kind = node.get("type")
    if kind:
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        if kind == "array" and isinstance(node.get("items"), dict):
            items = _deref(node["items"], defs)
            inner = _rule(items, defs) if items.get("type") != "object" else "objects (below)"
            kind = f"list of {inner}"
        elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
            names = node.get("propertyNames", {}).get("pattern")
            value = _rule(node["additionalProperties"], defs)
            kind = "mapping" + (f" of names {code(names)}" if names else "") + f" to {value}"
        parts.append(kind)
    for key, label in (
        ("pattern", "matches"),
        ("format", "format"),
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
        ("minProperties", "entries ≥"),
    ):
        if key in node:
            parts.append(f"{label} {code(node[key])}")
    if node.get("uniqueItems"):
        parts.append("distinct items")
    if "default" in node:
        parts.append("default " + code(node["default"]))
    for key in ("oneOf", "anyOf"):
        if key in node:
            parts.append(f" {key} ".join("(" + _rule(n, defs) + ")" for n in node[key]))
    return ", ".join(parts) or "any"


def _deref(node: dict, defs: dict) -> dict:
    ref = node.get("$ref") if isinstance(node, dict) else None
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = defs
        for part in ref[2:].split("/"):
            target = target.get(part, {})
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _fields(node: dict, prefix: str, root: dict, rows: list[list[str]]) -> None:
    node = _deref(node, root)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        items = _deref(node["items"], root)
        if items.get("properties"):
            _fields(items, prefix + "[]", root, rows)
        return
    required = set(node.get("required", ()))
    for name, child in node.get("properties", {}).items():
        child = _deref(child, root)
        path = f"{prefix}.{name}" if prefix else name
        rows.append(
            [
                code(path),
                "**R**" if name in required else "",
                _rule(child, root),
                cell(child.get("description", "")),
            ]
        )
        if child.get("properties") or (
            child.get("type") == "array" and _deref(child.get("items", {}), root).get("properties")
        ):
            _fields(child, path, root, rows)


def gen_manifest_fields() -> str:
    path = schema_path()
    if path is None:
        return missing(
            "No manifest JSON Schema found (looked for "
            + ", ".join(f"`{p}`" for p in SCHEMA_PATHS)
            + ")."
        )
    schema = json.loads(path.read_text(encoding="utf-8"))
    rows: list[list[str]] = []
    _fields(schema, "", schema, rows)
    closed = [code(p) for p in _closed_objects(schema, "", schema)]
    head = (
        f"From `{rel(path)}` ({cell(schema.get('title', ''))}). "
        "**R**: required when the enclosing object is present."
    )
    if closed:
        head += " Unknown keys are refused in: " + ", ".join(closed) + "."
    return head + "\n\n" + table(["Field", "", "Type and rule", "Description"], rows)


def _closed_objects(node: dict, prefix: str, root: dict) -> list[str]:
    node = _deref(node, root)
    found = [prefix or "(top level)"] if node.get("additionalProperties") is False else []
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        return found + _closed_objects(node["items"], prefix + "[]", root)
    for name, child in node.get("properties", {}).items():
        found += _closed_objects(child, f"{prefix}.{name}" if prefix else name, root)
    return found


# ------------------------------------------------------------------------------ API, CLI

_PROBE = r"""
import importlib, inspect, json, re, sys
result = {}
for module_name in sys.argv[1:]:
    entry = {"names": [], "error": None}
    try:
        module = importlib.import_module(module_name)
        names = list(getattr(module, "__all__"))
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
        result[module_name] = entry
        continue
    for name in names:
        item = {"name": name, "doc": None, "signature": None, "kind": None, "error": None}
        try:
            value = getattr(module, name)
            item["kind"] = ("class" if inspect.isclass(value) else "function"
                            if callable(value) else type(value).__name__)
            if name == "__version__":
                item["doc"] = "The installed version: " + repr(value)
            elif inspect.isclass(value) or callable(value) or inspect.ismodule(value):
                item["doc"] = inspect.getdoc(value)
            elif type(value).__module__.startswith("guardrails"):
                item["doc"] = inspect.getdoc(type(value))  # an instance: its class's doc
            if inspect.isclass(value) and (item["doc"] or "").startswith(name + "("):
                item["doc"] = None  # a dataclass's generated text, not a docstring
            own_init = not inspect.isclass(value) or "__init__" in vars(value)
            try:
                if callable(value) and own_init:
                    signature = str(inspect.signature(value))
                    item["signature"] = re.sub(r"<function (\w+) at 0x[0-9a-f]+>", r"\1",
                                               signature)
            except (TypeError, ValueError):
                pass
        except Exception as exc:
            item["error"] = f"{type(exc).__name__}: {exc}"
        entry["names"].append(item)
    result[module_name] = entry
print(json.dumps(result))
"""


def _pythons() -> list[str]:
    found = [
        os.environ.get("GUARDRAILS_PYTHON", ""),
        sys.executable,
        str(ROOT / "guardrails" / ".venv" / "bin" / "python"),
        str(ROOT / ".venv" / "bin" / "python"),
    ]
    return [p for i, p in enumerate(found) if p and Path(p).exists() and p not in found[:i]]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(GUARDRAILS_SRC), env.get("PYTHONPATH", "")])
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "100"  # argparse wraps help to the terminal: make it the same everywhere
    return env


_probe_cache: dict[str, Any] = {}


def _probe() -> dict:
    """`__all__` of guardrails and guardrails.testing with docstrings, from the Python that
    imports the most of them (the docs' own environment may lack the SDK's dependencies)."""
    if "result" in _probe_cache:
        return _probe_cache["result"]
    best: dict = {}
    best_score = -1
    for python in _pythons():
        try:
            done = subprocess.run(
                [python, "-c", _PROBE, "guardrails", "guardrails.testing"],
                capture_output=True,
                text=True,
                timeout=120,
                env=_env(),
                cwd=ROOT,
                check=False,
            )
            data = json.loads(done.stdout)
        except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
            continue
        score = sum(1 for m in data.values() for n in m["names"] if not n["error"])
        if score > best_score:
            best, best_score = {**data, "_python": python}, score
        if all(not m["error"] and not any(n["error"] for n in m["names"]) for m in data.values()):
            break  # this Python imports every public name: no need to try another
    _probe_cache["result"] = best
    return best


def _ast_docs() -> dict[str, tuple[str | None, str | None]]:
    """Docstring and signature of the package's top-level definitions, read without importing:
    used for a name whose import needs a dependency this Python does not have."""
    docs: dict[str, tuple[str | None, str | None]] = {}
    for file in sorted((GUARDRAILS_SRC / "guardrails").rglob("*.py")):
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                signature = None
                if not isinstance(node, ast.ClassDef):
                    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
                    signature = f"({ast.unparse(node.args)}){returns}"
                if node.name not in docs or (
                    docs[node.name][0] is None and ast.get_docstring(node)
                ):
                    docs[node.name] = (ast.get_docstring(node), signature)
    return docs


def _gen_api(module_name: str) -> str:
    if not (GUARDRAILS_SRC / "guardrails" / "__init__.py").is_file():
        return missing(
            f"`{rel(GUARDRAILS_SRC)}/guardrails` does not exist yet, so the public "
            f"names of `{module_name}` cannot be listed."
        )
    entry = _probe().get(module_name)
    if not entry or entry["error"]:
        reason = entry["error"] if entry else "no Python could import it"
        return missing(f"`import {module_name}` failed: {cell(reason)}.")
    fallback: dict[str, tuple[str | None, str | None]] | None = None
    rows = []
    for item in entry["names"]:
        doc, signature = item["doc"], item["signature"]
        if item["error"]:
            fallback = _ast_docs() if fallback is None else fallback
            doc, signature = fallback.get(item["name"], (None, None))
            if doc is None:
                log.info("generated reference: %s.%s: %s", module_name, item["name"], item["error"])
        summary = first_paragraph(doc) or "(no docstring)"
        name = f"`{item['name']}`" + (f"<br>{code(signature)}" if signature else "")
        rows.append([name, cell(summary)])
    return f"`{module_name}.__all__`, with the first paragraph of each docstring:\n\n" + table(
        ["Name", "What it is"], rows
    )


def gen_api() -> str:
    return _gen_api("guardrails")


def gen_testing_api() -> str:
    return _gen_api("guardrails.testing")


_SUBCOMMANDS = re.compile(r"^usage:.*?\{([a-z0-9_,-]+)\}", re.DOTALL)


def _help(python: str, args: tuple[str, ...]) -> tuple[tuple[str, ...], str | None, str]:
    """`python -m guardrails ARGS --help`: (args, help text or None, why not)."""
    try:
        done = subprocess.run(
            [python, "-m", "guardrails", *args, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
            cwd=ROOT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return args, None, str(exc)
    if done.returncode != 0:
        return args, None, (done.stderr.strip().splitlines() or ["no output"])[-1]
    return args, done.stdout.rstrip(), ""


def gen_cli() -> str:
    if not (GUARDRAILS_SRC / "guardrails" / "__main__.py").is_file():
        return missing(
            f"`{rel(GUARDRAILS_SRC)}/guardrails/__main__.py` does not exist yet, so "
            "the command line cannot be listed."
        )
    python = _probe().get("_python") or sys.executable
    helps: dict[tuple[str, ...], str] = {}
    failures: list[str] = []
    level: list[tuple[str, ...]] = [()]
    with ThreadPoolExecutor(max_workers=8) as pool:  # one level of subcommands at a time
        while level:
            found: list[tuple[str, ...]] = []
            for args, text, why in pool.map(lambda a: _help(python, a), level):
                if text is None:
                    failures.append(f"`python -m guardrails {' '.join(args)} --help`: {cell(why)}")
                    continue
                helps[args] = text
                match = _SUBCOMMANDS.search(text)
                if match and len(args) < 3:
                    found += [(*args, name) for name in match.group(1).split(",")]
            level = found
    out = [
        f"### `{' '.join(['python -m guardrails', *args])}`\n\n```text\n{helps[args]}\n```\n"
        for args in sorted(helps, key=lambda a: [_order(helps, a[:i], a[i]) for i in range(len(a))])
    ]
    if failures:
        out.append(missing("Could not run: " + "; ".join(failures)))
    return "\n".join(out)


def _order(helps: dict[tuple[str, ...], str], parent: tuple[str, ...], name: str) -> int:
    """Position of subcommand `name` in its parent's help (the parser's own order)."""
    match = _SUBCOMMANDS.search(helps.get(parent, ""))
    names = match.group(1).split(",") if match else []
    return names.index(name) if name in names else len(names)


# ------------------------------------------------------------------------------ ownership


class _Placeholder:
    """Renders any unknown answer in a path as `<name>`."""

    def __init__(self, name: str = "answer") -> None:
        self.name = name

    def __getattr__(self, attr: str) -> _Placeholder:
        return _Placeholder(attr)

    def __str__(self) -> str:
        return f"<{self.name}>"


_CONDITIONAL = re.compile(r"^\{%-?\s*if\s+(.+?)\s*-?%\}(.*?)\{%-?\s*endif\s*-?%\}(.*)$")


def _app_path(template_path: str, answers_file: str) -> tuple[str, list[str]]:
    """A template path as it appears in an app, and the conditions it is rendered under."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.Undefined, autoescape=False)  # noqa: S701
    parts: list[str] = []
    conditions: list[str] = []
    for part in template_path.split("/"):
        match = _CONDITIONAL.match(part)
        if match:
            conditions.append(match.group(1))
            part = match.group(2) + match.group(3)
        if "{" in part:
            context = {"_copier_conf": {"answers_file": answers_file}}
            names = re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)", part)
            context.update({n: _Placeholder(n) for n in names if n not in context})
            with contextlib.suppress(jinja2.TemplateError):
                part = env.from_string(part).render(context)
        if part.endswith(".jinja"):
            part = part[: -len(".jinja")]
        if part not in ("", "."):
            parts.append(part)
    return "/".join(parts), conditions


def _glob_match(path: str, pattern: str) -> bool:
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            regex += ".*"
            i += 2
            if pattern.startswith("/", i):
                i += 1
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "[^/]"
            i += 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.fullmatch(regex, path) is not None


def _excluded(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    return any(
        fnmatch.fnmatch(part, pattern)
        for pattern in patterns
        if "/" not in pattern and "{" not in pattern
        for part in parts
    ) or any(_glob_match(path, pattern) for pattern in patterns if "/" in pattern)


def _walk(top: Path) -> list[Path]:
    """Files under top, symlinked files included, symlinked folders not followed."""
    files: list[Path] = []
    for folder, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not (Path(folder) / d).is_symlink())
        files += [Path(folder) / n for n in sorted(names)]
    return files


def _drift_checked(app_path: str) -> str:
    listed = drift_list()
    if listed is None:
        return "?"
    files, dirs = listed
    return "yes" if app_path in files or any(app_path.startswith(d + "/") for d in dirs) else ""


def _tree_rows(
    top: Path, skip: list[str], exclude: list[str], answers_file: str
) -> list[list[str]]:
    rows = []
    for file in _walk(top):
        relative = file.relative_to(top).as_posix()
        if _excluded(relative, exclude):
            continue
        app_path, conditions = _app_path(relative, answers_file)
        if not app_path:
            continue
        owned = any(_glob_match(app_path, p) for p in skip)
        rows.append(
            [
                code(app_path),
                "**owner**" if owned else "template",
                "" if owned else _drift_checked(app_path),
                ", ".join(code(c) for c in conditions) or "always",
                code(rel(file)),
            ]
        )
    return sorted(rows, key=lambda row: (row[1] != "**owner**", row[0]))


def gen_file_ownership() -> str:
    try:
        settings, _documents = load_copier()
    except MissingSource as exc:
        return missing(str(exc))
    skip = [str(p) for p in settings.get("_skip_if_exists", [])]
    exclude = [str(p) for p in settings.get("_exclude", [])]
    answers_file = str(settings.get("_answers_file", ".copier-answers.yml"))
    header = [
        "Path in the app",
        "Owner",
        "Drift-checked",
        "Rendered when",
        "Source in this repository",
    ]
    out = [
        "Owner-owned: the paths matching a `_skip_if_exists` pattern of `copier.yml` ("
        + ", ".join(code(p) for p in skip)
        + "), created once and never touched by "
        "`copier update`. Template-owned: everything else, replaced by `copier update`.\n"
    ]
    shared = ROOT / "templates"
    out.append("### Every app: the shared tree `templates/`\n")
    if shared.is_dir():
        out.append(table(header, _tree_rows(shared, skip, exclude, answers_file)))
    else:
        out.append(missing("The shared tree `templates/` does not exist."))
    kinds = sorted(p for p in (ROOT / "kinds").glob("*/files") if p.is_dir())
    if not kinds:
        out.append(missing("No `kinds/*/files` folder found: the per-kind files cannot be listed."))
    for files in kinds:
        out.append(f"### Kind `{files.parent.name}`: `{rel(files)}/`\n")
        rows = _tree_rows(files, skip, exclude, answers_file)
        out.append(table(header, rows) if rows else "No files.\n")
    return "\n".join(out)


# ------------------------------------------------------------------------------ more facts


def _py_source(*candidates: str) -> tuple[Path, ast.Module] | None:
    for candidate in candidates:
        path = GUARDRAILS_SRC / "guardrails" / candidate
        if path.is_file():
            return path, ast.parse(path.read_text(encoding="utf-8"))
    return None


def _constant(tree: ast.Module, name: str) -> Any:
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value:
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def drift_list() -> tuple[list[str], list[str]] | None:
    """The files and folders `python -m guardrails drift` compares: the list the template
    ships (templates/.microapp/FILES.sha256, written by `make hashes` from the shared tree)."""
    listed = ROOT / "templates" / ".microapp" / "FILES.sha256"
    if not listed.is_file():
        return None
    files, dirs = [], []
    for line in listed.read_text("utf-8").splitlines():
        if line.startswith("# owned: "):
            dirs.append(line.removeprefix("# owned: ").rstrip("/"))
        elif line and not line.startswith("#"):
            files.append(line.split("  ", 1)[1])
    return files, dirs


def gen_risk_tier_rules() -> str:
    found = _py_source("core/rules.py")
    if not found:
        return missing("`guardrails/src/guardrails/core/rules.py` does not exist yet.")
    path, tree = found
    function = _function(tree, "risk_tier")
    doc = ast.get_docstring(function) if function else None
    if not doc:
        return missing(f"`risk_tier()` with a docstring not found in `{rel(path)}`.")
    window = _constant(tree, "EXPIRY_WARNING_DAYS")
    out = (
        f"From the docstring of `risk_tier()` in `{rel(path)}` (the first rule that matches "
        f"wins):\n\n```text\n{doc}\n```\n"
    )
    if window is not None:
        out += (
            f"\nExpiry warning window (`EXPIRY_WARNING_DAYS`): {window} days before "
            "`lifecycle.expires`.\n"
        )
    return out


def gen_fixtures() -> str:
    found = _py_source("testing/plugin.py")
    if not found:
        return missing(
            "`guardrails/src/guardrails/testing/plugin.py` does not exist yet, so "
            "the pytest fixtures cannot be listed."
        )
    path, tree = found
    rows = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if ast.unparse(target) not in ("pytest.fixture", "fixture"):
                continue
            scope = "function"
            for keyword in call.keywords if call else ():
                if keyword.arg == "scope" and isinstance(keyword.value, ast.Constant):
                    scope = keyword.value.value
            doc = first_paragraph(ast.get_docstring(node)) or "(no docstring)"
            rows.append([code(node.name), cell(scope), cell(doc)])
    if not rows:
        return missing(f"No pytest fixture found in `{rel(path)}`.")
    return f"Fixtures of the pytest plugin `{rel(path)}`:\n\n" + table(
        ["Fixture", "Scope", "Gives"], rows
    )


_JINJA_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def gen_answer_usage() -> str:
    try:
        _settings, documents = load_copier()
    except MissingSource as exc:
        return missing(str(exc))
    keys = [k for _f, q in documents for k, v in q.items() if isinstance(v, dict)]
    tops = [p for p in (ROOT / "templates", ROOT / "kinds") if p.is_dir()]
    if not tops:
        return missing("Neither `templates/` nor `kinds/` exists.")
    used: dict[str, set[str]] = {k: set() for k in keys}
    for top in tops:
        for file in _walk(top):
            relative = rel(file)
            texts = [relative]
            if file.suffix == ".jinja":
                with contextlib.suppress(UnicodeDecodeError):
                    texts.append(file.read_text(encoding="utf-8"))
            for text in texts:
                for block in _JINJA_BLOCK.findall(text):
                    for ident in set(_IDENT.findall(block)) & used.keys():
                        used[ident].add(relative)
    rows = [
        [code(k), "<br>".join(code(f) for f in sorted(used[k])) or "only in `copier.yml`"]
        for k in keys
    ]
    return (
        "Each answer and computed value, with the files whose Jinja uses it "
        "(file contents and file names under `templates/` and `kinds/`):\n\n"
        + table(["Key", "Used in"], rows)
    )


def gen_manifest_template() -> str:
    shared = ROOT / "templates" / "microapp.yaml.jinja"
    if not shared.is_file():
        return missing("`templates/microapp.yaml.jinja` does not exist.")
    out = [f"`{rel(shared)}`:\n\n```jinja\n{shared.read_text(encoding='utf-8').rstrip()}\n```\n"]
    for fragment in sorted((ROOT / "kinds").glob("*/manifest.yaml.jinja")):
        out.append(
            f"`{rel(fragment)}`, included for kind `{fragment.parent.name}`:\n\n"
            f"```jinja\n{fragment.read_text(encoding='utf-8').rstrip()}\n```\n"
        )
    return "\n".join(out)


def _audit_calls(file: Path) -> list[tuple[str, str, str]]:
    """(action, result, enclosing function) of each `audit.record(...)` call in a file."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return []
    calls: list[tuple[str, str, str]] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = child.name
            if (
                isinstance(child, ast.Call)
                and ast.unparse(child.func) == "audit.record"
                and child.args
            ):
                action = child.args[0]
                text = action.value if isinstance(action, ast.Constant) else ast.unparse(action)
                result = "success"
                for keyword in child.keywords:
                    if keyword.arg == "result":
                        value = keyword.value
                        is_text = isinstance(value, ast.Constant)
                        result = value.value if is_text else ast.unparse(value)
                calls.append((str(text), str(result), inner))
            visit(child, inner)

    visit(tree, "(module)")
    return calls


def gen_audit_actions() -> str:
    sources = [GUARDRAILS_SRC / "guardrails", *sorted((ROOT / "kinds").glob("*/files"))]
    sources = [s for s in sources if s.is_dir()]
    if not sources:
        return missing("Neither `guardrails/src/guardrails` nor `kinds/*/files` exists.")
    rows = []
    for top in sources:
        for file in _walk(top):
            if file.suffix not in (".py", ".jinja") or "testing" in file.parts:
                continue
            for action, result, where in _audit_calls(file):
                rows.append([code(action), code(result), f"{code(rel(file))} ({cell(where)})"])
    if not rows:
        return missing("No `audit.record(...)` call found.")
    return (
        "Every `audit.record(...)` call in the guardrails and the kinds' starter code (test "
        "helpers excluded), generated from the source:\n\n"
        + table(["Action", "Result", "Written by"], rows)
    )


# ------------------------------------------------------------------------------ mkdocs hook

GENERATORS: dict[str, Callable[[], str]] = {
    "questions": gen_questions,
    "computed-values": gen_computed_values,
    "manifest-fields": gen_manifest_fields,
    "api": gen_api,
    "testing-api": gen_testing_api,
    "cli": gen_cli,
    "file-ownership": gen_file_ownership,
    "answer-usage": gen_answer_usage,
    "manifest-template": gen_manifest_template,
    "risk-tier-rules": gen_risk_tier_rules,
    "fixtures": gen_fixtures,
    "audit-actions": gen_audit_actions,
}


def generate(name: str) -> str:
    try:
        return GENERATORS[name]()
    except Exception as exc:  # the layout is in flux: say what failed, do not stop the build
        log.warning("generated reference %r failed: %s: %s", name, type(exc).__name__, exc)
        return missing(f"Generating `{name}` failed: {cell(type(exc).__name__)}: {cell(exc)}")


def on_pre_build(config: Any) -> None:
    _probe_cache.clear()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            log.warning(
                "%s: unknown generated section %r (known: %s)",
                page.file.src_uri,
                name,
                ", ".join(GENERATORS),
            )
            return match.group(0)
        return generate(name)

    return MARKER.sub(replace, markdown)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for wanted in sys.argv[1:] or list(GENERATORS):
        print(f"<!-- {wanted} -->\n{generate(wanted)}")
