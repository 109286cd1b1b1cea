"""microapp.yaml migrations: the one home of every change a template release makes to the
manifest's shape, as text edits that keep the owner's comments, layout and additions.

The manifest is the owner's file after the copy (decision 0008): `copier update` never merges
into it. A release that changes its shape adds a step here; the steps run from

- `python -m guardrails manifest migrate` (`make migrate` in an app): any time, again and
  again; it changes nothing when the file is current, and refuses a file with merge conflict
  markers without touching it;
- the template's copier migrations (`hooks/` in the template repository), which load this file
  from the template checkout, so an update that crosses a major version runs the same steps.

Standard library only (the hooks run under copier's Python, not the app's).
"""

from __future__ import annotations

import re

CURRENT = 3  # equals guardrails.core.manifest.SCHEMA_VERSION (a test keeps them equal)
CONFLICT = re.compile(r"^(<{7}|={7}|>{7})(\s|$)", re.MULTILINE)
VERSION_LINE = re.compile(r"^schema_version:\s*(\d+)\s*(#.*)?$", re.MULTILINE)
KIND_LINE = re.compile(r"^kind:\s*['\"]?([\w-]+)", re.MULTILINE)
BLOCK_KEY = re.compile(r"^(?P<indent>[ \t]+)channel(?P<rest>\s*:.*)$")
FLOW_KEY = re.compile(r"(?P<open>\bsupport:\s*\{[^}\n]*?)\bchannel(?P<colon>\s*:)")
FLOW_DATA = re.compile(r"^(?P<head>data:\s*\{)(?P<body>[^}]*)\}", re.MULTILINE)
BLOCK_DATA = re.compile(r"^data\s*:\s*(#.*)?$")
WRITES_COMMENT = "# does the app change data? (risk tier 2 if so)"


def manifest_conflicts(text: str) -> bool:
    return bool(CONFLICT.search(text))


# ---------------------------------------------------------------------- 1 -> 2 (0.2.0)
def rename_support_channel(text: str) -> tuple[str, bool]:
    """Rename `channel` inside the top-level `support:` mapping (block or flow style)."""
    changed = False
    text, count = FLOW_KEY.subn(r"\g<open>contact\g<colon>", text)
    changed |= bool(count)
    lines = text.split("\n")
    in_support = False
    for i, line in enumerate(lines):
        if re.match(r"^support\s*:\s*(#.*)?$", line):
            in_support = True
            continue
        if in_support:
            if line.strip() and not line[:1].isspace() and not line.lstrip().startswith("#"):
                in_support = False  # next top-level key
                continue
            match = BLOCK_KEY.match(line)
            if match:
                lines[i] = f"{match['indent']}contact{match['rest']}"
                changed = True
    return "\n".join(lines), changed


# ---------------------------------------------------------------------- 2 -> 3 (1.0.0)
def add_writes(text: str, writes: bool) -> tuple[str, str]:
    """Add `writes` to the top-level `data:` mapping; returns (text, "added"|"present")."""
    value = "true" if writes else "false"
    flow = FLOW_DATA.search(text)
    if flow:
        body = flow["body"]
        if re.search(r"(^|[{,\s])writes\s*:", body):
            return text, "present"
        kept = body.rstrip()
        if not kept.strip():
            new_body = f"writes: {value}"
        else:
            sep = "" if kept.endswith(",") else ","
            new_body = f"{kept}{sep} writes: {value}{body[len(kept) :]}"
        return text[: flow.start("body")] + new_body + text[flow.end("body") :], "added"
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if BLOCK_DATA.match(line)), None)
    if start is None:
        raise ValueError("microapp.yaml has no top-level `data:` mapping; add one (see the docs)")
    indent, last, after_pii = None, start, None
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.strip() and not line[:1].isspace() and not line.startswith("#"):
            break  # next top-level key
        if not line.strip() or line.lstrip().startswith("#"):
            if line[:1].isspace() and line.strip():
                last = i  # an indented comment belongs to the block
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = line[:width]
        if width == len(indent):
            if re.match(rf"^{re.escape(indent)}writes\s*:", line):
                return text, "present"
            after_pii = i if re.match(rf"^{re.escape(indent)}pii\s*:", line) else after_pii
        last = i
    indent = indent if indent is not None else "  "
    if after_pii is not None:  # where the template puts it; stop at the end of pii's value
        last = after_pii
        for i in range(after_pii + 1, len(lines)):
            width = len(lines[i]) - len(lines[i].lstrip())
            if lines[i].strip() and width <= len(indent):
                break
            if lines[i].strip():
                last = i
    lines.insert(last + 1, f"{indent}writes: {value}           {WRITES_COMMENT}")  # as rendered
    return "\n".join(lines), "added"


# ---------------------------------------------------------------------- all steps
def migrate_manifest(text: str) -> tuple[str, str | None]:
    """Return (new text, what was done or None). Raises ValueError when it cannot migrate."""
    version = VERSION_LINE.search(text)
    if not version:
        raise ValueError("microapp.yaml has no top-level schema_version line")
    current = int(version.group(1))
    if current > 3:
        return text, None
    kind = KIND_LINE.search(text)
    writes = (kind.group(1) if kind else "") != "dashboard"
    done = []
    if current == 1:
        text, _ = rename_support_channel(text)
        done.append("support.channel renamed to support.contact")
    text, how = add_writes(text, writes)
    if how == "added":
        reason = f"kind {kind.group(1)}" if kind else "no kind line: counted as changing data"
        done.append(f"data.writes: {str(writes).lower()} added ({reason})")
    if current < 3:
        comment = f"  {version.group(2)}" if version.group(2) else ""
        text = VERSION_LINE.sub(f"schema_version: 3{comment}", text, count=1)
    if not done and current == 3:
        return text, None
    return text, f"microapp.yaml schema_version {current} -> 3: " + (
        "; ".join(done) or "data.writes was already there"
    )
