"""Secrets: references, the dev backend, production refusals.

The Vault backend is tested against a local Vault API server in test_secrets_vault.py.
"""

import dataclasses

import pytest

from guardrails import secret
from guardrails.core.manifest import schema_problems
from guardrails.core.runtime import build_runtime
from guardrails.core.settings import ConfigError, Settings, VaultSettings
from guardrails.secrets.store import (
    SecretError,
    SecretNotDeclared,
    SecretRef,
    SecretStore,
    SecretUnavailable,
    dev_variable,
)
from guardrails.testing import test_settings


def variant(manifest, **changes):
    """The manifest with some top-level keys replaced (lifecycle.stage via stage=...)."""
    raw = {**manifest.raw, **changes}
    if "stage" in changes:
        raw.pop("stage")
        raw["lifecycle"] = {**manifest.raw["lifecycle"], "stage": changes["stage"]}
    return dataclasses.replace(manifest, raw=raw)


def test_references_parse_and_bad_ones_are_explained():
    ref = SecretRef.parse("vault:kv/apps/leave-requests/db#url")
    assert (ref.scheme, ref.mount, ref.path, ref.key) == (
        "vault",
        "kv",
        "apps/leave-requests/db",
        "url",
    )
    assert str(ref) == "vault:kv/apps/leave-requests/db#url"
    assert SecretRef.parse("env:HR_DB_URL").var == "HR_DB_URL"
    for bad in ("vault:kv#url", "vault:kv/x", "env:lower", "plain-text", "vault:kv/../x#k y"):
        with pytest.raises(ValueError, match="vault:<mount>/<path>#<key>"):
            SecretRef.parse(bad)


def test_manifest_schema_takes_secrets_and_connector_fields(manifest):
    raw = {
        **manifest.raw,
        "secrets": {"hr-db-url": "vault:kv/apps/x/hr-db#url", "api-key": "env:API_KEY"},
        "connectors": [
            {
                "name": "hr-db",
                "type": "sql",
                "access": "read-only",
                "secret": "hr-db-url",
                "masking": {"email": "email", "salary": "redact", "ssn": "partial"},
                "timeout_seconds": 5,
                "max_rows": 500,
            },
            {
                "name": "incidents",
                "type": "http",
                "access": "read-only",
                "base_url": "https://incidents.example.com/api",
                "auth": "oauth2-client-credentials",
                "token_url": "https://login.example.com/oauth2/token",
                "client_id": "leave-requests",
                "scopes": ["incidents:read"],
                "secret": "vault:kv/apps/x/incidents#client_secret",
                "rate_limit_per_minute": 60,
                "external": False,
            },
        ],
    }
    assert schema_problems(raw) == []
    raw["secrets"] = {"Bad Name": "vault:kv/x#y", "db": "password123"}
    raw["connectors"][0]["masking"] = {"email": "scramble"}
    del raw["connectors"][1]["token_url"]
    problems = " | ".join(schema_problems(raw))
    assert "Bad Name" in problems and "password123" in problems and "scramble" in problems
    assert "token_url" in problems


def test_dev_backend_reads_environment_and_fallbacks():
    refs = {
        "hr-db-url": SecretRef.parse("vault:kv/apps/x/hr-db#url"),
        "api-key": SecretRef.parse("env:API_KEY"),
    }
    store = SecretStore(
        refs,
        environ={"API_KEY": "k-123", dev_variable("hr-db-url"): "sqlite:///hr.db"},
        fallbacks={"session-key": "laptop-key"},
    )
    assert dev_variable("hr-db-url") == "MICROAPP_SECRET_HR_DB_URL"
    assert store.get("api-key") == "k-123"
    assert store.get("hr-db-url") == "sqlite:///hr.db"
    assert store.get("session-key") == "laptop-key"
    with pytest.raises(SecretNotDeclared, match="add it under `secrets:`"):
        store.get("nope")
    empty = SecretStore(refs)
    with pytest.raises(SecretUnavailable, match="MICROAPP_SECRET_HR_DB_URL is not set"):
        empty.get("hr-db-url")
    with pytest.raises(SecretUnavailable, match="API_KEY is not set"):
        empty.get("api-key")


def test_secret_needs_a_running_app():
    with pytest.raises(SecretError, match="no app is running"):
        secret("session-key")


def test_app_secrets_go_through_the_store_on_a_laptop(tmp_path, idp, manifest):
    settings = test_settings(tmp_path, idp, environ={"MICROAPP_SECRET_HR_DB_URL": "sqlite://"})
    m = variant(manifest, secrets={"hr-db-url": "vault:kv/apps/x/hr-db#url"}, connectors=[])
    rt = build_runtime(settings, m)
    assert rt.secrets.backend == "dev"
    assert rt.session_key == settings.session_key
    assert rt.database_url == settings.database_url
    assert rt.secrets.get("hr-db-url") == "sqlite://"
    rt.close()


def test_a_connector_naming_an_undeclared_secret_stops_start_up(tmp_path, idp, manifest):
    m = variant(
        manifest,
        connectors=[{"name": "hr-db", "type": "sql", "access": "read-only", "secret": "hr-db"}],
    )
    with pytest.raises(ConfigError, match="uses secret 'hr-db', which is not declared"):
        build_runtime(test_settings(tmp_path, idp), m)


def test_production_refuses_the_dev_backend(tmp_path, manifest):
    prod = variant(
        manifest,
        stage="production",
        secrets={"session-key": "env:SESSION_KEY", "database-url": "vault:kv/apps/x/db#url"},
        connectors=[],
    )
    dotenv = tmp_path / ".env"
    dotenv.write_text("X=1\n")
    settings = Settings(
        base_url="https://app.example.com",
        sso_issuer="https://login.example.com",
        database_url="postgresql://db/app",
        dotenv_file=dotenv,
    )
    with pytest.raises(ConfigError) as refused:
        build_runtime(settings, prod)
    message = str(refused.value)
    for expected in (
        "VAULT_ADDR is not set",
        f"a {dotenv} file was read",
        "secret session-key is env:SESSION_KEY",
        "MICROAPP_SSO_CLIENT_SECRET is a laptop fall-back: declare secrets.sso-client-secret",
        "docs/how-to/secrets-and-connectors.md",
    ):
        assert expected in message
    assert "DATABASE_URL is a laptop fall-back" not in message  # declared as a vault: secret
    plain = dataclasses.replace(
        settings, dotenv_file=None, vault=VaultSettings(addr="http://vault.example.com:8200")
    )
    with pytest.raises(ConfigError, match="VAULT_ADDR http://vault.example.com:8200 is not https"):
        build_runtime(plain, prod)
    # A host that merely starts like a local one is not this machine.
    lookalike = dataclasses.replace(
        plain, vault=VaultSettings(addr="http://localhost.attacker.example:8200")
    )
    with pytest.raises(ConfigError, match="localhost.attacker.example:8200 is not https"):
        build_runtime(lookalike, prod)
    for local in ("http://127.0.0.1:8200", "http://localhost:8200", "http://[::1]:8200"):
        on_this_machine = dataclasses.replace(plain, vault=VaultSettings(addr=local))
        with pytest.raises(ConfigError) as refused:
            build_runtime(on_this_machine, prod)
        assert "is not https" not in str(refused.value)


def test_vault_settings_come_from_the_environment():
    settings = Settings.from_env(
        {
            "VAULT_ADDR": "https://vault.example.com:8200/",
            "VAULT_NAMESPACE": "team-a",
            "VAULT_CACERT": "/etc/ssl/vault-ca.pem",
            "VAULT_ROLE_ID_FILE": "/run/secrets/role-id",
            "VAULT_SECRET_ID": "s3cr3t-id",
            "VAULT_TOKEN": "hvs.should-not-show",
            "MICROAPP_SESSION_KEY": "session-key-value",
            "MICROAPP_SECRETS_TTL": "60",
        }
    )
    vault = settings.vault
    assert vault.addr == "https://vault.example.com:8200" and vault.namespace == "team-a"
    assert vault.auth_method == "approle" and vault.role_id_file == "/run/secrets/role-id"
    assert vault.cacert == "/etc/ssl/vault-ca.pem" and settings.secrets_ttl == 60
    shown = repr(settings)
    for value in ("s3cr3t-id", "hvs.should-not-show", "session-key-value"):
        assert value not in shown
    k8s = Settings.from_env({"VAULT_ADDR": "https://v", "VAULT_KUBERNETES_ROLE": "app"}).vault
    assert k8s.auth_method == "kubernetes"
    assert Settings.from_env({"VAULT_TOKEN": "t"}).vault.auth_method == "token"


def test_dotenv_fills_in_what_the_environment_does_not_set(tmp_path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# laptop only\nexport MICROAPP_SECRET_HR_DB_URL='sqlite:///hr.db'\n"
        'DATABASE_URL="sqlite:///from-dotenv.db"\nMICROAPP_LOG_FORMAT=json\n'
    )
    monkeypatch.setenv("MICROAPP_DOTENV", str(dotenv))
    monkeypatch.setenv("MICROAPP_LOG_FORMAT", "console")
    settings = Settings.from_env()
    assert settings.dotenv_file == dotenv
    assert settings.environ["MICROAPP_SECRET_HR_DB_URL"] == "sqlite:///hr.db"
    assert settings.database_url == "sqlite:///from-dotenv.db"
    assert settings.log_format == "console"  # the real environment wins
