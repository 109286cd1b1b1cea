"""A running app whose own secrets live in (local) Vault.

The session key, the OIDC client secret and the database URL come from the local Vault API
server over AppRole. Stop the server: the app keeps serving from its cache until the TTL, then
answers 503 with a clear message (never a crash), and recovers when Vault is back. Real time,
short TTL.
"""

import dataclasses
import json
import time

import httpx
import pytest

from guardrails.core.runtime import build_runtime
from guardrails.core.settings import VaultSettings
from guardrails.testing import login, serve, test_settings
from guardrails.testing.vault import VaultServer, log_text

from .conftest import tiny_app

TTL = 2.0
SECRETS = {
    "session-key": "vault:kv/apps/leave-requests/web#session_key",
    "sso-client-secret": "vault:kv/apps/leave-requests/web#oidc_client_secret",
    "database-url": "vault:kv/apps/leave-requests/db#url",
}


@pytest.fixture
def vault():
    with VaultServer() as server:
        yield server


@pytest.fixture
def vault_runtime(tmp_path, idp, manifest, vault):
    values = {
        "session_key": "vault-session-key-" + "k" * 32,
        "oidc_client_secret": "vault-oidc-client-secret-value",
        "url": f"sqlite:///{tmp_path / 'from-vault.db'}",
    }
    vault.put("kv", "apps/leave-requests/web", {k: values[k] for k in list(values)[:2]})
    vault.put("kv", "apps/leave-requests/db", {"url": values["url"]})
    policy = vault.policy("leave-requests", "kv/data/apps/leave-requests/*")
    role_id, secret_id = vault.add_approle("leave-requests", [policy], token_ttl=600)
    settings = test_settings(
        tmp_path,
        idp,
        session_key=None,
        database_url=f"sqlite:///{tmp_path / 'not-this-one.db'}",
        vault=VaultSettings(
            addr=vault.url, auth_method="approle", role_id=role_id, secret_id=secret_id
        ),
        secrets_ttl=TTL,
    )
    m = dataclasses.replace(manifest, raw={**manifest.raw, "secrets": SECRETS, "connectors": []})
    rt = build_runtime(settings, m, defer_secrets=True)
    rt.extras["vault_values"] = values
    return rt


def wait_for(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_app_secrets_come_from_vault_and_survive_an_outage_until_the_ttl(
    vault_runtime, vault, demo
):
    rt, values = vault_runtime, vault_runtime.extras["vault_values"]
    assert rt.secrets.backend == "vault"
    assert rt.session_key == values["session_key"]
    assert rt.sso_client_secret == values["oidc_client_secret"]
    assert rt.database_url == values["url"] and str(rt.engine.url) == values["url"]
    with serve(tiny_app, rt) as live, live.client() as client, log_text() as logs:
        login(client, live, demo["admin"])
        assert live.app.state.guardrails.sso.client.client_secret == values["oidc_client_secret"]
        assert client.get(f"{live.url}/").status_code == 200
        vault.down()
        down_at = time.monotonic()
        served = 0
        while client.get(f"{live.url}/").status_code == 200:  # cached secrets keep serving
            served += 1
            time.sleep(0.1)
        elapsed = time.monotonic() - down_at
        assert served > 0 and TTL / 2 - 0.2 <= elapsed <= TTL + 1.5
        page = client.get(f"{live.url}/")
        assert page.status_code == 503 and page.headers["retry-after"] == "30"
        assert "cannot read the credentials it needs from its secrets store (Vault)" in page.text
        api = httpx.get(f"{live.url}/")  # a JSON caller gets JSON
        assert api.status_code == 503 and api.json()["error"] == "Temporarily unavailable"
        health = httpx.get(f"{live.url}/healthz")
        assert health.status_code == 200 and health.json()["secrets"] == "unavailable"
        vault.up()
        back = wait_for(lambda: (r := client.get(f"{live.url}/")).status_code == 200 and r)
        assert back.json()["user"] == demo["admin"]  # still signed in: same session key
        assert httpx.get(f"{live.url}/healthz").json()["secrets"] == "ok"
        events = live.audit_file.read_text()
    assert "vault unreachable" in logs.getvalue()
    for value in values.values():
        for text in (events, logs.getvalue(), page.text, json.dumps(health.json())):
            assert value not in text


def test_app_starts_while_vault_is_down_and_serves_once_it_is_up(tmp_path, idp, manifest, vault):
    vault.put("kv", "apps/leave-requests/web", {"session_key": "k" * 40, "oidc_client_secret": "c"})
    vault.put("kv", "apps/leave-requests/db", {"url": f"sqlite:///{tmp_path / 'late.db'}"})
    token = vault.root_token()
    vault.down()
    settings = test_settings(
        tmp_path,
        idp,
        session_key=None,
        vault=VaultSettings(addr=vault.url, token=token),
        secrets_ttl=TTL,
    )
    m = dataclasses.replace(manifest, raw={**manifest.raw, "secrets": SECRETS, "connectors": []})
    rt = build_runtime(settings, m, defer_secrets=True)  # no crash (no crash loop)
    assert not rt.ready and rt.engine is None
    with serve(tiny_app, rt) as live:
        first = httpx.get(f"{live.url}/", headers={"accept": "text/html"})
        assert first.status_code == 503 and "secrets store (Vault)" in first.text
        assert httpx.get(f"{live.url}/healthz").json()["status"] == "degraded"
        vault.up()
        answer = wait_for(lambda: (r := httpx.get(f"{live.url}/")).status_code == 401 and r)
        assert answer.json()["error"] == "Unauthorized"  # the app is up: sign-in required
        assert rt.ready and rt.database_url.endswith("late.db")
        assert (tmp_path / "late.db").exists()  # tables made on the late database


def test_rotated_session_key_keeps_sessions_and_new_database_url_is_used(
    vault_runtime, vault, demo, tmp_path
):
    rt, values = vault_runtime, vault_runtime.extras["vault_values"]
    with serve(tiny_app, rt) as live, live.client() as client:
        login(client, live, demo["admin"])
        vault.put(
            "kv",
            "apps/leave-requests/web",
            {"session_key": "rotated-" + "r" * 40, "oidc_client_secret": "rotated-client"},
        )

        def rotated() -> bool:
            client.get(f"{live.url}/")  # requests re-read the (cached) secrets
            # Each secret has its own cache entry, so the two may turn over a request apart.
            key, client_secret = rt.session_key, rt.sso_client_secret
            return key.startswith("rotated-") and client_secret == "rotated-client"

        wait_for(rotated)
        assert client.get(f"{live.url}/").json()["user"] == demo["admin"]  # old cookie still valid
        assert rt.previous_session_key == values["session_key"]
        assert live.app.state.guardrails.sso.client.client_secret != "rotated-client"
        login(client, live, demo["admin"])  # a new sign-in uses the rotated client secret
        assert live.app.state.guardrails.sso.client.client_secret == "rotated-client"
        vault.put("kv", "apps/leave-requests/db", {"url": f"sqlite:///{tmp_path / 'moved.db'}"})
        wait_for(lambda: client.get(f"{live.url}/healthz") and rt.database_url.endswith("moved.db"))
        # Sessions were kept in the old database: the new one does not know this one.
        assert client.get(f"{live.url}/", follow_redirects=False).status_code == 303
        assert (tmp_path / "moved.db").exists()
