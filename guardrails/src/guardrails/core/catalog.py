"""The app's Backstage catalog entry (`catalog-info.yaml`), derived from `microapp.yaml`.

One rule, here: which manifest facts become which fields of a Backstage `Component`. The copy
renders the first `catalog-info.yaml` (templates/catalog-info.yaml.jinja, checked against this
rule by the template's tests); afterwards `python -m guardrails catalog` (`make catalog`)
rewrites it from the manifest, and `make check` fails while the two disagree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

CATALOG_FILE = Path("catalog-info.yaml")
ANSWERS_FILE = Path(".copier-answers.yml")
ANNOTATION = "microapp"  # annotation prefix: microapp/<name>
SYSTEM = "microapps"
HEADER = (
    "# Backstage catalog entry of this app, derived from microapp.yaml: do not edit by hand.\n"
    "# Change microapp.yaml, then run `make catalog`; `make check` fails while they disagree.\n"
)


def entity_name(text: str) -> str:
    """A Backstage entity name (letters, digits, '-', '_', '.'; at most 63) from free text."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or "unknown"


def template_version(answers_file: Path = ANSWERS_FILE) -> str:
    """The template release the app was last rendered from (`_commit` of the answers file)."""
    if not answers_file.is_file():
        return "unknown"
    answers = yaml.safe_load(answers_file.read_text("utf-8")) or {}
    return str(answers.get("_commit") or "unknown")


def entity(manifest: dict[str, Any], version: str) -> dict[str, Any]:
    """The Component entity for a (validated, current-schema) manifest."""
    data, lifecycle = manifest["data"], manifest["lifecycle"]
    contact = str(manifest["support"]["contact"])
    links = [{"title": link["title"], "url": link["url"]} for link in manifest.get("links") or []]
    if re.match(r"^https?://", contact):
        links.append({"title": "Support", "url": contact, "icon": "help"})
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": manifest["app_id"],
            "title": manifest["name"],
            "description": manifest.get("description") or manifest["name"],
            "tags": [
                "microapp",
                manifest["kind"],
                f"tier-{manifest['risk_tier']}",
                data["classification"],
            ],  # fmt: skip
            **({"links": links} if links else {}),
            "annotations": {
                f"{ANNOTATION}/runbook": "RUNBOOK.md",
                f"{ANNOTATION}/template-version": version,
                f"{ANNOTATION}/risk-tier": str(manifest["risk_tier"]),
                f"{ANNOTATION}/expires": str(lifecycle["expires"]),
                f"{ANNOTATION}/data-classification": data["classification"],
                f"{ANNOTATION}/owner-email": manifest["owner"],
                f"{ANNOTATION}/support": contact,
            },
        },
        "spec": {
            "type": "service",
            "lifecycle": lifecycle["stage"],
            "owner": f"group:{entity_name(manifest['team'])}",
            "system": SYSTEM,
        },
    }


def render(item: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(item, sort_keys=False, allow_unicode=True, width=100)


def differences(path: Path, wanted: dict[str, Any]) -> list[str]:
    """What differs between the file at `path` and the wanted entity (empty: in sync)."""
    if not path.is_file():
        return [f"{path} is missing"]
    try:
        current = yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as exc:
        return [f"{path} is not valid YAML: {exc}"]
    if current == wanted:
        return []
    found: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
        elif a != b:
            found.append(f"{where}: {a!r} in the file, {b!r} from microapp.yaml")

    walk(current, wanted, "")
    return found
