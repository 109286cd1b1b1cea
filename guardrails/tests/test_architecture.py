"""The package's own boundaries, read from its source with `ast`.

- No module imports a private name (`_x`; dunders such as `__version__` are fine) from another
  guardrails module, nor reads one off an imported guardrails module (`module._x`).
- The import graph between guardrails modules has no cycle: neither the one Python follows
  at import time (module level) nor the one that includes imports made inside functions.
- Every module imports on its own, in any order (fresh interpreters, sorted and reversed).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import guardrails

PACKAGE = Path(guardrails.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if MODULES[module].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


Import = tuple[ast.stmt, str, str | None, str]


def imports(module: str, *, module_level: bool) -> list[Import]:
    """(node, module, name or None, local name) for each guardrails import in `module`: `name`
    is None when a module itself is imported.

    `module_level`: only what runs when the module is imported (not inside functions or
    methods, not under `if TYPE_CHECKING:`).
    """
    found: list[Import] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "guardrails":
                        local = alias.asname or alias.name.split(".")[0]
                        found.append((node, alias.name, None, local))
            elif isinstance(node, ast.ImportFrom):
                source = absolute(module, node)
                if source.split(".")[0] == "guardrails":
                    for alias in node.names:
                        local, sub = alias.asname or alias.name, f"{source}.{alias.name}"
                        if sub in MODULES:
                            found.append((node, sub, None, local))
                        else:
                            found.append((node, source, alias.name, local))
            elif module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    visit([n for n in inner if isinstance(n, (ast.stmt, ast.ExceptHandler))])

    visit(ast.parse(MODULES[module].read_text("utf-8")).body)
    return found


def graph(*, module_level: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        targets = set()
        for _node, target, _name, _local in imports(module, module_level=module_level):
            while target not in MODULES and "." in target:  # a name that is not a module
                target = target.rsplit(".", 1)[0]
            if target != module:
                targets.add(target)
        edges[module] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_no_module_imports_a_private_name_of_another():
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text("utf-8"))
        aliases = set()  # local names bound to guardrails modules
        for node, target, name, local in imports(module, module_level=False):
            if name is not None and private(name):
                found.append(f"{module}:{node.lineno} imports {name} from {target}")
            if name is None:
                aliases.add(local)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and private(node.attr)
            ):
                found.append(f"{module}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_the_checks_see_what_they_look_for():
    """The helpers above do find private imports, module aliases and cycles."""
    assert private("_request") and not private("__version__") and not private("audit")
    names = {name for _n, _t, name, _l in imports("guardrails.web.app", module_level=True)}
    assert (
        "AuditError" in names
        and "guardrails.core.context" in graph(module_level=True)["guardrails.web.app"]
    )
    inside = graph(module_level=False)["guardrails.connectors.registry"]
    assert "guardrails.connectors.sql" in inside  # imported inside Connectors.get
    assert (
        "guardrails.connectors.sql"
        not in graph(module_level=True)["guardrails.connectors.registry"]
    )
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_at_import_time():
    assert find_cycle(graph(module_level=True)) is None


def test_no_import_cycle_even_through_imports_inside_functions():
    assert find_cycle(graph(module_level=False)) is None


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_every_module_imports_in_a_fresh_interpreter(order):
    names = sorted(MODULES)
    if order == "reversed":
        names.reverse()
    code = f"import importlib\nfor name in {names!r}:\n    importlib.import_module(name)\n"
    done = subprocess.run(  # noqa: S603 (this interpreter, fixed code)
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
