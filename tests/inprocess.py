"""Copier's render, in-process: the questions' defaults, validators and templates through Jinja
with copier's filters, in milliseconds instead of a copier run. For property-based tests, which
render thousands of answers; tests/test_render.py checks the shortcut against copier itself."""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import FileSystemLoader, Template
from jinja2.sandbox import SandboxedEnvironment

from .conftest import REPO, copier_config

ENV = SandboxedEnvironment(
    loader=FileSystemLoader(str(REPO)),
    extensions=["jinja2_ansible_filters.AnsibleCoreFiltersExtension"],
)
QUESTIONS: dict[str, dict[str, Any]] = {
    key: question
    for key, question in copier_config().items()
    if not key.startswith("_") and isinstance(question, dict)
}
CAST = {"int": int, "bool": lambda v: str(v).lower() in ("true", "yes", "1"), "str": str}


@functools.cache
def _compiled(source: str) -> Template:
    return ENV.from_string(source)


def context(answers: dict[str, Any]) -> dict[str, Any]:
    """Every question's value: the answer where given, else its default (computed ones too)."""
    values: dict[str, Any] = {}
    for key, question in QUESTIONS.items():
        if key in answers:
            values[key] = answers[key]
        elif "default" in question:
            default = question["default"]
            if isinstance(default, str):
                default = _compiled(default).render(values)
            values[key] = CAST[question.get("type", "str")](default)
    return values


def asked(key: str, values: dict[str, Any]) -> bool:
    """Whether copier asks `key` (and so records it in .copier-answers.yml)."""
    when = QUESTIONS[key].get("when", True)
    if isinstance(when, str):
        when = _compiled(when).render(values).strip().lower() in ("true", "yes", "1")
    return bool(when)


def validate(key: str, answers: dict[str, Any]) -> str:
    """The validator's message for `answers[key]`: empty when copier accepts it."""
    validator = QUESTIONS[key].get("validator")
    if not validator:
        return ""
    return _compiled(validator).render(context(answers)).strip()


def render(path: str, answers: dict[str, Any]) -> str:
    """One template of the repository (a path under it), rendered with `answers`."""
    return ENV.get_template(path).render(context(answers))


def render_answers_file(answers: dict[str, Any]) -> str:
    """.copier-answers.yml as copier writes it: the asked questions' answers."""
    values = context(answers)
    recorded = {"_commit": "v1.0.0", "_src_path": "gh:example/microapp-templates"}
    recorded |= {key: values[key] for key in QUESTIONS if asked(key, values)}
    return ENV.get_template("partials/copier-answers.yml.jinja").render(
        {**values, "_copier_answers": recorded}
    )
