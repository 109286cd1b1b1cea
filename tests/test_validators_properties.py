"""Property-based tests of every text question's validator (hypothesis).

For any answer, either copier refuses it with a message, or the app it renders parses
(microapp.yaml with yaml.safe_load, pyproject.toml with tomllib, .copier-answers.yml) and says
exactly what was typed. Answers are rendered in-process (tests/inprocess.py, checked against
copier by tests/test_render.py); the regressions named in issue 16 also go through a real copier
run in tests/test_questions.py.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import inprocess
from .conftest import DEFAULTS, REPO

BASE = {
    **DEFAULTS,
    "app_id": "leave-requests",
    "team": "hr-ops",
    "description": "Leave requests, run by hr-ops",
    "support_channel": "#hr-ops",
}
GROUPS = {  # question -> (kind that asks it, role in the manifest)
    "requester_groups": ("approval", "requester"),
    "approver_groups": ("approval", "approver"),
    "admin_groups": ("approval", "admin"),
    "viewer_groups": ("dashboard", "viewer"),
    "pii_reader_groups": ("dashboard", "pii-reader"),
    "exporter_groups": ("dashboard", "exporter"),
    "responder_groups": ("incident-helper", "responder"),
}
Read = Callable[[dict, dict], Any]
# question -> where the rendered app says it: (manifest, pyproject) -> value
SAYS: dict[str, list[Read]] = {
    "app_name": [lambda m, p: m["name"]],
    "app_id": [lambda m, p: m["app_id"], lambda m, p: p["project"]["name"]],
    "owner_email": [lambda m, p: m["owner"]],
    "team": [lambda m, p: m["team"]],
    "description": [lambda m, p: m["description"], lambda m, p: p["project"]["description"]],
    "support_channel": [lambda m, p: m["support"]["contact"]],
    "sso_issuer": [lambda m, p: m["sso"]["issuer"]],
    "sso_client_id": [lambda m, p: m["sso"]["client_id"]],
    "package_index": [lambda m, p: company_index(p)],
}
EXAMPLES = {  # answers that must be accepted; the strategies mutate them
    "app_name": ["Leave requests", 'Joe\'s "quoted" app: 100%', "Équipe Café", "-x: #y"],
    "app_id": ["leave-requests", "abc", "off", "yes", "null", "true", "a" * 40],
    "owner_email": ["hr-ops@example.com", "%ops@example.com", "first.last+tag@sub.example.co.uk"],
    "team": ["hr-ops", "Équipe café", "- team: x"],
    "description": ["One line: what it is for # not a comment", "'quoted' \"too\" \\ back"],
    "support_channel": ["#hr-ops", "https://chat.example.org/help", "@here"],
    "sso_issuer": ["https://login.example.com/realms/corp", "http://127.0.0.1:9400"],
    "sso_client_id": ["leave-requests", "a:b.c_d-e", "007", "null"],
    "package_index": ["https://packages.example.com/simple", "https://x.example.com:8443/a/~b"],
    **dict.fromkeys(GROUPS, ("hr, hr-leads", "a", "cn:staff, b.c ,d_e", "yes, no, null")),
}
# Characters that break YAML or TOML, or that they read as something else.
NASTY = [
    *"\n\r\t\x00\x08\x0b\x0c\x1b\x1f\x7f\x80\x85\x9f\xa0\xad",
    *"\u2028\u2029\u202e\u2066\u200b\ufeff\ufffe\uffff\ud800\udfff",
    *"\"'\\#:{}%[],&*!|>@`-? ",
    ": ",
    " #",
    "😀",
    "é",
]


def company_index(pyproject: dict) -> str:
    """The company index's URL in pyproject.toml, or "" when there is none."""
    indexes = pyproject.get("tool", {}).get("uv", {}).get("index", [])
    return next((index["url"] for index in indexes if index["name"] == "company"), "")


def kind_of(key: str) -> str:
    return GROUPS.get(key, ("approval",))[0]


def pattern_of(key: str) -> str | None:
    """The regex the question's validator accepts (anchors removed), if it has one."""
    validator = inprocess.QUESTIONS[key]["validator"]
    if "group_list" in validator:
        validator = (REPO / "partials" / "validators.jinja").read_text()
    found = re.search(r"regex_search\('\^(.*?)\\\\Z'\)", validator)
    return found[1].replace("\\\\", "\\") if found else None


def text_questions() -> list[str]:
    return [
        key
        for key, question in inprocess.QUESTIONS.items()
        if question.get("type", "str") == "str"
        and "validator" in question
        and question.get("when") is not False
    ]


def expected(key: str, value: str) -> list[Any]:
    if key in GROUPS:
        return [[name.strip() for name in value.split(",")]]
    return [value] * len(SAYS[key])


def said(key: str, manifest: dict, pyproject: dict) -> list[Any]:
    if key in GROUPS:
        return [manifest["sso"]["roles"][GROUPS[key][1]]]
    return [read(manifest, pyproject) for read in SAYS[key]]


def check(key: str, value: str) -> str:
    """'refused' (with a message) or 'accepted' (and the app says exactly `value`)."""
    answers = {**BASE, "kind": kind_of(key), key: value}
    message = inprocess.validate(key, answers)
    if message:
        assert len(message) > 20, message  # a sentence saying what to type instead
        return "refused"
    manifest = yaml.safe_load(inprocess.render("templates/microapp.yaml.jinja", answers))
    pyproject = tomllib.loads(inprocess.render("templates/pyproject.toml.jinja", answers))
    recorded = yaml.safe_load(inprocess.render_answers_file(answers))
    assert said(key, manifest, pyproject) == expected(key, value), (key, value)
    assert recorded[key] == value, (key, value)
    return "accepted"


def answers_for(key: str) -> st.SearchStrategy[str]:
    good = st.sampled_from(EXAMPLES[key])
    pattern = pattern_of(key)
    if pattern:
        good = good | st.from_regex(pattern, fullmatch=True)
    char = st.sampled_from(NASTY) | st.characters()
    mutated = st.builds(
        lambda text, at, extra: text[:at] + extra + text[at:],
        good,
        st.integers(min_value=0, max_value=130),
        char | st.lists(st.sampled_from(NASTY), min_size=1, max_size=3).map("".join),
    )
    return good | mutated | st.builds(lambda text, extra: text + extra, good, char) | st.text()


def test_every_text_question_is_covered():
    """A new question with a validator must be added here, with where the app says it."""
    assert sorted(text_questions()) == sorted([*SAYS, *GROUPS])
    for key in text_questions():
        pattern = pattern_of(key)
        if pattern is not None:  # anchored with \Z, never $ (which matches before a final "\n")
            assert "$" not in pattern, key


@pytest.mark.parametrize("key", sorted([*SAYS, *GROUPS]))
def test_examples_are_accepted_and_said_exactly(key):
    for value in EXAMPLES[key]:
        assert check(key, value) == "accepted", value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        *((key, "Leave requests\n") for key in ("app_name", "team", "description")),
        ("app_id", "leave-requests\n"),
        ("owner_email", "hr-ops@example.com\n"),
        ("sso_issuer", "https://login.example.com\n"),
        ("sso_client_id", "leave-requests\n"),
        ("package_index", "https://packages.example.com/simple\n"),
        ("admin_groups", "hr-admins\n"),
        *(
            (key, f"Leave{char}requests")
            for key in ("app_name", "team", "description", "support_channel")
            for char in "\x7f\x85\x1b\t\x00\x9b\u2028\u2029\u202e\ufeff"
        ),
    ],
)
def test_named_regressions_are_refused(key, value):
    assert check(key, value) == "refused"


@pytest.mark.parametrize("key", sorted([*SAYS, *GROUPS]))
@settings(
    max_examples=int(os.environ.get("VALIDATOR_EXAMPLES", "60")),  # more: VALIDATOR_EXAMPLES=2000
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_any_answer_is_refused_or_said_exactly(key, data):
    check(key, data.draw(answers_for(key), label=key))
