"""microapp.yaml: load it, validate it against the JSON Schema, compute the risk tier.

The manifest is the single source of per-app facts. `load_manifest` returns a typed, frozen
`Manifest` or raises `ManifestError` listing every problem as `field: what is wrong`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker

from guardrails.core.deployment import DEFAULT_QUOTAS
from guardrails.core.rules import is_secure_or_local_url, risk_tier

SCHEMA_VERSION = 3
DEFAULT_SCOPES = ("openid", "email", "profile")


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that keeps dates as text, so `expires: 2027-05-22` validates as a date
    string whether or not the owner quoted it."""


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class ManifestError(ValueError):
    """The manifest is missing, unreadable or invalid; `problems` lists each finding."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(
        resources.files("guardrails.core").joinpath("manifest.schema.json").read_text("utf-8")
    )
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _field(error_path) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error_path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def schema_problems(data: Any) -> list[str]:
    """Every JSON Schema violation, as `field: message`, in document order."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.path)))
    return [f"{_field(e.absolute_path)}: {e.message}" for e in errors]


@dataclass(frozen=True)
class Manifest:
    """Typed view of a valid microapp.yaml."""

    raw: dict[str, Any]
    path: Path
    notices: tuple[str, ...] = ()

    @property
    def app_id(self) -> str:
        return self.raw["app_id"]

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def kind(self) -> str:
        return self.raw["kind"]

    @property
    def owner(self) -> str:
        return self.raw["owner"]

    @property
    def team(self) -> str:
        return self.raw["team"]

    @property
    def support_contact(self) -> str:
        """Where users get help: chat channel, mailbox or URL."""
        return self.raw["support"]["contact"]

    support_channel = support_contact  # name before schema_version 2; kept for owner pages

    @property
    def stage(self) -> str:
        return self.raw["lifecycle"]["stage"]

    @property
    def expires(self) -> dt.date:
        return dt.date.fromisoformat(self.raw["lifecycle"]["expires"])

    @property
    def classification(self) -> str:
        return self.raw["data"]["classification"]

    @property
    def pii(self) -> bool:
        return self.raw["data"]["pii"]

    @property
    def writes(self) -> bool:
        """Whether the app changes data (schema 3); the risk tier reads it."""
        return self.raw["data"]["writes"]

    @property
    def retention_days(self) -> int:
        return self.raw["data"]["retention_days"]

    @property
    def page_size(self) -> int:
        """Rows per page of the app's lists (`ui.page_size`, default 50)."""
        return int((self.raw.get("ui") or {}).get("page_size", 50))

    @property
    def risk_tier(self) -> int:
        return self.raw["risk_tier"]

    @property
    def requests_per_minute(self) -> int:
        """Requests a minute each signed-in caller may make (`quotas.requests_per_minute`)."""
        chosen = (self.raw.get("quotas") or {}).get("requests_per_minute")
        return int(chosen or DEFAULT_QUOTAS["requests_per_minute"])

    @property
    def limits_fail_open(self) -> bool:
        """Whether rate limits let calls through while their storage is down (guardrails.core.
        ratelimit): `quotas.when_limits_unavailable`, by default closed for tier 3 only."""
        chosen = (self.raw.get("quotas") or {}).get("when_limits_unavailable")
        if chosen is None:
            return self.risk_tier < 3
        return chosen == "open"

    @property
    def sso_issuer(self) -> str:
        """The issuer exactly as declared: a trailing `/` is part of it (OpenID Discovery)."""
        return self.raw["sso"]["issuer"]

    @property
    def sso_client_id(self) -> str:
        return self.raw["sso"]["client_id"]

    @property
    def groups_claim(self) -> str:
        return self.raw["sso"].get("groups_claim", "groups")

    @property
    def roles_claim(self) -> str:
        """Claim name or dotted path (realm_access.roles) holding the groups or roles."""
        return self.raw["sso"].get("roles_claim") or self.groups_claim

    @property
    def sso_scopes(self) -> list[str]:
        return list(self.raw["sso"].get("scopes") or DEFAULT_SCOPES)

    @property
    def sso_userinfo(self) -> bool | None:
        """True: always merge userinfo claims; False: never; None (default): when needed."""
        return self.raw["sso"].get("userinfo")

    @property
    def sso_token_endpoint_auth_method(self) -> str:
        return self.raw["sso"].get("token_endpoint_auth_method", "client_secret_basic")

    @property
    def sso_ca_file(self) -> str | None:
        return self.raw["sso"].get("ca_file")

    @property
    def sso_audiences(self) -> list[str]:
        """Audiences a bearer access token may carry (default: the client id)."""
        audience = self.raw["sso"].get("audience") or self.sso_client_id
        return [audience] if isinstance(audience, str) else list(audience)

    @property
    def sso_id_token_shape_check(self) -> bool:
        return self.raw["sso"].get("id_token_shape_check", True)

    @property
    def sso_algorithms(self) -> list[str]:
        return list(self.raw["sso"].get("algorithms", ["RS256"]))

    @property
    def roles(self) -> dict[str, list[str]]:
        """Role name -> identity-provider groups whose members hold it."""
        return {role: list(groups) for role, groups in self.raw["sso"]["roles"].items()}

    def role_label(self, role: str) -> str:
        """The name people see for `role`: `sso.role_labels`, else "pii-reader" -> "Pii reader"."""
        labels = self.raw["sso"].get("role_labels") or {}
        return labels.get(role) or role.replace("-", " ").capitalize()

    def roles_for_groups(self, groups: list[str] | tuple[str, ...]) -> frozenset[str]:
        held = set(groups)
        return frozenset(role for role, wanted in self.roles.items() if held & set(wanted))


def upgrade(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Bring an older manifest to the current schema in memory; returns (data, notices).

    The file itself is rewritten by `python -m guardrails manifest migrate` (`make migrate`; the
    same steps, guardrails.core.manifest_migrations, run from the template's copier migrations);
    until then the app keeps working and `make check` says so.
    """
    notices = []
    if data.get("schema_version") == 1:
        data = {**data, "schema_version": 2}
        support = dict(data.get("support") or {})
        if "channel" in support and "contact" not in support:
            support["contact"] = support.pop("channel")
        data["support"] = support
        notices.append(
            "microapp.yaml uses schema_version 1: support.channel is now support.contact. "
            "Run `make migrate` (python -m guardrails manifest migrate), which rewrites it."
        )
    if data.get("schema_version") == 2:
        data = {**data, "schema_version": 3}
        data_block = dict(data.get("data") or {})
        if "writes" not in data_block:
            data_block["writes"] = data.get("kind") != "dashboard"
            notices.append(
                "microapp.yaml uses schema_version 2: data.writes (does the app change data?) "
                f"is now required; it is taken as {str(data_block['writes']).lower()} for now. "
                "Run `make migrate` (python -m guardrails manifest migrate), or add "
                f"`writes: {str(data_block['writes']).lower()}` under `data:` and set "
                "schema_version: 3."
            )
        data["data"] = data_block
    return data, notices


def _urls(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The URLs that must be https or local: the SSO issuer and connectors' token URLs."""
    found = [("sso.issuer", data["sso"]["issuer"])]
    for i, spec in enumerate(data.get("connectors") or []):
        if spec.get("token_url"):
            found.append((f"connectors[{i}].token_url", spec["token_url"]))
    return found


def validate(data: Any, path: Path | str = "microapp.yaml") -> list[str]:
    """All problems with a parsed manifest: schema first, then the computed risk tier."""
    problems = schema_problems(data)
    if problems:
        return problems
    tier, reasons = risk_tier(data)
    if data["risk_tier"] != tier:
        problems.append(
            f"risk_tier: declared {data['risk_tier']} but the rules give {tier} "
            f"({'; '.join(reasons)}); set risk_tier: {tier}"
        )
    for field, url in _urls(data):
        if not is_secure_or_local_url(url):
            problems.append(
                f"{field}: {url} is not https (plain http is allowed only to this machine: "
                "localhost, 127.0.0.1 or ::1)"
            )
    created = dt.date.fromisoformat(data["lifecycle"]["created"])
    expires = dt.date.fromisoformat(data["lifecycle"]["expires"])
    if expires <= created:
        problems.append("lifecycle.expires: must be after lifecycle.created")
    return problems


def load_manifest(path: Path | str = "microapp.yaml") -> Manifest:
    """Read, validate and return the manifest, or raise ManifestError."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ManifestError(
            path, ["file not found (run from the app folder, or set MICROAPP_MANIFEST)"]
        ) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ManifestError(path, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ManifestError(path, ["(top level): expected a mapping of keys to values"])
    data, notices = upgrade(data)
    problems = validate(data, path)
    if problems:
        raise ManifestError(path, problems)
    return Manifest(raw=data, path=path, notices=tuple(notices))


def schema_path() -> Path:
    """Where the manifest's JSON Schema is installed (for check-jsonschema, editors)."""
    return Path(str(resources.files("guardrails.core").joinpath("manifest.schema.json")))
