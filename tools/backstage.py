"""Generate backstage/template.yaml, the Backstage Software Template, from copier.yml.

    python -m tools.backstage            write backstage/template.yaml
    python -m tools.backstage --check    exit 1 when the file is not what copier.yml gives

copier.yml is the one home of the questions: each becomes a form field with the same help,
choices (enum), default (when it is a plain value; a computed default is left to copier),
and validation (the validator's regular expression, its range, the free-text and group-list
rules of partials/validators.jinja). A question asked only for some kinds (`when: kind == ...`)
is shown on the first page once one of those kinds is chosen. Computed values (`when:
false`) are not asked.

The steps run this template with the copier scaffolder action `fetch:copier` (npm
@diamondlightsource/plugin-scaffolder-backend-module-copier), publish the repository and
register its catalog-info.yaml (docs: how-to/offer-the-template-in-backstage.md).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "backstage/template.yaml"
TEMPLATE_URL = "https://github.com/example-org/microapp-templates"
HEADER = (
    "# Generated from copier.yml by `python -m tools.backstage`: do not edit by hand (a test\n"
    "# checks it is in sync). Set TEMPLATE_URL in tools/backstage.py to the template's location.\n"
)
# Free text (partials/validators.jinja free_text): one line, no control or invisible layout
# characters, no template markers; without slashes and a leading '.' where it names files.
NO_CONTROLS = r"\u0000-\u001f\u007f-\u009f\u2028-\u202e\u2066-\u2069\ufeff"
NO_MARKERS = r"(?!.*(\{\{|\{%|\{#|\}\}|%\}))"
FREE_TEXT = f"^{NO_MARKERS}[^{NO_CONTROLS}]*$"
FREE_TEXT_NO_SLASH = f"^{NO_MARKERS}(?!\\.)[^/\\\\{NO_CONTROLS}]*$"
GROUP_LIST = f"^{NO_MARKERS}[^,{NO_CONTROLS}]{{1,256}}(,[^,{NO_CONTROLS}]{{1,256}})*$"
PAGES = {
    "The app": ["kind", "app_name", "app_id", "description"],
    "Ownership and support": ["owner_email", "team", "support_channel"],
    "Data and lifecycle": ["data_classification", "handles_pii", "retention_days", "expiry_days"],
}
LAST_PAGE = "Sign-in, roles and delivery"


def load_questions() -> list[tuple[str, dict[str, Any]]]:
    """copier.yml's questions in order, with the kinds' included ones (docs' own reader)."""
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "docs/gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _settings, documents = module.load_copier()
    return [(key, value) for _file, questions in documents for key, value in questions.items()]


def validation(spec: dict[str, Any], key: str) -> dict[str, Any]:
    """JSON Schema keywords for a question's Jinja validator (patterns, ranges, lengths)."""
    validator = str(spec.get("validator", ""))
    out: dict[str, Any] = {}
    if match := re.search(r"regex_search\('(.+?)'\)\)", validator):
        pattern = match[1].replace("\\\\", "\\")
        out["pattern"] = re.sub(r"\\Z$", "$", pattern)
    if match := re.search(rf"{key} < (\d+) or {key} > (\d+)", validator):
        out["minimum"], out["maximum"] = int(match[1]), int(match[2])
    if match := re.search(
        rf"free_text\({key}, '[^']*'(?:, (\d+))?(?:, (true|false))?\)", validator
    ):
        out["minLength"], out["maxLength"] = 1, int(match[1] or 120)
        out["pattern"] = FREE_TEXT_NO_SLASH if match[2] == "false" else FREE_TEXT
    if "group_list(" in validator:
        out["pattern"] = GROUP_LIST
    if key == "package_index" and "pattern" in out:  # empty means: the machine's settings
        out["pattern"] = f"^$|{out['pattern']}"
    return out


def field(key: str, spec: dict[str, Any]) -> dict[str, Any]:
    kind = {"str": "string", "int": "integer", "bool": "boolean"}[spec.get("type", "str")]
    prop: dict[str, Any] = {"title": str(spec.get("help", key)).strip(), "type": kind}
    if choices := spec.get("choices"):
        prop["enum"] = list(choices.values())
        prop["enumNames"] = list(choices.keys())
    default = spec.get("default")
    if default is not None and not (isinstance(default, str) and "{{" in default):
        prop["default"] = default
    elif default is not None:
        prop["description"] = "Leave empty for the default the template computes."
    prop.update(validation(spec, key))
    return prop


def condition(spec: dict[str, Any]) -> str | None:
    when = str(spec.get("when", ""))
    match = re.fullmatch(r"\{\{\s*kind == '([\w-]+)'\s*\}\}", when)
    return match[1] if match else None


def parameters(questions: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    asked = [(k, s) for k, s in questions if s.get("when") is not False]
    pages: dict[str, dict[str, Any]] = {}
    for title in [*PAGES, LAST_PAGE]:
        pages[title] = {"title": title, "required": [], "properties": {}}
    per_kind: dict[str, dict[str, Any]] = {}
    for key, spec in asked:
        title = next((t for t, keys in PAGES.items() if key in keys), LAST_PAGE)
        kind = condition(spec)
        if kind:
            per_kind.setdefault(kind, {})[key] = field(key, spec)
            continue
        pages[title]["properties"][key] = field(key, spec)
        if spec.get("default") is None and spec.get("type", "str") == "str":
            pages[title]["required"].append(key)
    first = pages[next(t for t, keys in PAGES.items() if "kind" in keys)]
    first["dependencies"] = {  # the kind's own questions appear once the kind is chosen
        "kind": {
            "oneOf": [
                {"properties": {"kind": {"const": kind}, **fields}}
                for kind, fields in sorted(per_kind.items())
            ]
        }
    }
    repo = {
        "title": "Where the app's repository goes",
        "required": ["repoUrl"],
        "properties": {
            "repoUrl": {
                "title": "Repository location",
                "type": "string",
                "ui:field": "RepoUrlPicker",
                "ui:options": {"allowedHosts": ["github.com"]},
            }
        },
    }
    return [page for page in pages.values() if page["properties"]] + [repo]


def template(questions: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "apiVersion": "scaffolder.backstage.io/v1beta3",
        "kind": "Template",
        "metadata": {
            "name": "microapp",
            "title": "Micro app (approval, dashboard, incident helper)",
            "description": "A governed internal micro app with sign-in, audit, policies and CI, "
            "from the CoE's copier template.",
            "tags": ["microapp", "python", "copier"],
        },
        "spec": {
            "owner": "group:microapp-coe",
            "type": "service",
            "parameters": parameters(questions),
            "steps": [
                {
                    "id": "render",
                    "name": "Render the microapp template (copier)",
                    "action": "fetch:copier",
                    "input": {
                        "url": TEMPLATE_URL,
                        "targetPath": "./",
                        # every answer given in the form; copier computes what was left empty
                        "values": "${{ parameters }}",
                    },
                },
                {
                    "id": "publish",
                    "name": "Publish the repository",
                    "action": "publish:github",
                    "input": {
                        "repoUrl": "${{ parameters.repoUrl }}",
                        "description": "${{ parameters.description }}",
                        "defaultBranch": "main",
                        "repoVisibility": "internal",
                    },
                },
                {
                    "id": "register",
                    "name": "Register the app in the catalog",
                    "action": "catalog:register",
                    "input": {
                        "repoContentsUrl": "${{ steps.publish.output.repoContentsUrl }}",
                        "catalogInfoPath": "/catalog-info.yaml",
                    },
                },
            ],
            "output": {
                "links": [
                    {"title": "Repository", "url": "${{ steps.publish.output.remoteUrl }}"},
                    {
                        "title": "Open in the catalog",
                        "icon": "catalog",
                        "entityRef": "${{ steps.register.output.entityRef }}",
                    },
                ]
            },
        },
    }


def render() -> str:
    return HEADER + yaml.safe_dump(
        template(load_questions()), sort_keys=False, allow_unicode=True, width=100
    )


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if not OUTPUT.is_file() or OUTPUT.read_text("utf-8") != text:
            print(f"{OUTPUT.relative_to(REPO)} is out of date: run python -m tools.backstage")
            return 1
        return 0
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text, "utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
