"""A kind's `app` package, importable in this process for the length of a block: its code as
every new app gets it (kinds/<kind>/files/src, templated files rendered in-process). Used by the
attack suite and the route fuzzing, which serve the kinds' apps without building a venv."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import Any

from guardrails.core.db import Model

from . import inprocess
from .conftest import KINDS, REPO


@contextlib.contextmanager
def kind_code(kind: str, answers: dict[str, Any], folder: Path):
    """Yields the kind's `app.main.build`; afterwards `app` and the kind's tables are gone, so
    that another kind (its own `app`, its own tables) can follow in the same process."""
    src = folder / "src"
    shutil.copytree(KINDS / kind / "files/src", src)
    for template in list(src.rglob("*.jinja")):
        source = (KINDS / kind / "files/src" / template.relative_to(src)).relative_to(REPO)
        template.with_suffix("").write_text(inprocess.render(str(source), answers))
        template.unlink()
    sys.path.insert(0, str(src))
    try:
        from app.main import build

        yield build
    finally:
        sys.path.remove(str(src))
        for name in [m for m in sys.modules if m == "app" or m.startswith("app.")]:
            del sys.modules[name]
        for mapper in list(Model.registry.mappers):  # the kind's tables, not the SDK's
            if mapper.class_.__module__.split(".")[0] == "app":
                Model.metadata.remove(mapper.local_table)
