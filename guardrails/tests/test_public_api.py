"""The public surface: exactly the documented names, resolved lazily, and the test kit kept out
of the production import path."""

import subprocess
import sys

import pytest

import guardrails

DOCUMENTED = {
    "Actor",
    "AuditError",
    "ConnectorError",
    "Manifest",
    "Model",
    "Page",
    "SecretUnavailable",
    "User",
    "__version__",
    "audit",
    "audit_trail",
    "connector",
    "count_rows",
    "create_app",
    "current_user",
    "db_session",
    "keyset_page",
    "limit_per_user",
    "load_manifest",
    "render",
    "require_role",
    "require_user",
    "runtime",
    "schedule",
    "secret",
    "verify_audit",
}
TESTING = {
    "LiveApp",
    "VaultServer",
    "audit_events",
    "bound",
    "demo_users",
    "free_port",
    "login",
    "provider_id_token",
    "serve",
    "serve_demo_incidents",
    "signed_in",
    "test_settings",
    "with_free_local_ports",
}


def modules_after(code: str) -> set[str]:
    out = subprocess.run(  # noqa: S603 (this interpreter, fixed code)
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_all_is_exactly_the_documented_names():
    assert set(guardrails.__all__) == DOCUMENTED
    assert len(guardrails.__all__) == len(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_every_public_name_resolves(name):
    assert getattr(guardrails, name) is not None
    namespace: dict = {}
    exec(f"from guardrails import {name}", namespace)  # noqa: S102 (a fixed name)
    assert namespace[name] is getattr(guardrails, name)


def test_undocumented_names_are_not_attributes():
    with pytest.raises(AttributeError):
        guardrails.build_runtime  # noqa: B018


def test_audit_is_the_recorder_and_its_code_lives_in_auditing():
    from guardrails import audit
    from guardrails.auditing.log import audit as recorder

    assert audit is recorder
    assert guardrails.audit is audit and callable(audit.record)
    assert sys.modules["guardrails.auditing"].__name__ == "guardrails.auditing"  # the package stays


def test_version_is_the_distribution_version():
    from importlib import metadata

    assert guardrails.__version__ == metadata.version("microapp-guardrails")


def test_importing_guardrails_loads_no_web_framework_or_telemetry():
    loaded = modules_after("import guardrails")
    heavy = {"fastapi", "starlette", "opentelemetry", "authlib", "sqlalchemy", "jsonschema"}
    assert not {m.split(".")[0] for m in loaded} & heavy


def test_the_manifest_command_loads_no_web_framework_or_telemetry():
    loaded = modules_after("from guardrails.cli import main")
    assert not {m.split(".")[0] for m in loaded} & {"fastapi", "opentelemetry", "authlib"}


@pytest.mark.parametrize(
    "module",
    [
        "guardrails.web.app",
        "guardrails.core.runtime",
        "guardrails.core.policy",
        "guardrails.connectors.http",
        "guardrails.connectors.sql",
        "guardrails.secrets.vault",
        "guardrails.cli",
    ],
)
def test_production_code_never_imports_the_test_kit(module):
    loaded = modules_after(f"import {module}")
    assert not {m for m in loaded if m.startswith("guardrails.testing")}
    assert "pytest" not in loaded and "oidc_provider_mock" not in loaded


def test_the_test_kit_exposes_its_helpers():
    import guardrails.testing

    assert set(guardrails.testing.__all__) >= TESTING
    for name in TESTING:
        assert getattr(guardrails.testing, name) is not None
