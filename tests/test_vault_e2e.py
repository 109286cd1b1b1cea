"""End to end with secrets in Vault: the generated approval app, started by `make dev`, reads its
session key, OIDC client secret and database URL from a local Vault API server over AppRole.
Vault is stopped: pages keep working from the cache until its TTL, then answer 503 with a clear
message; Vault comes back: the app recovers and the user is still signed in.

HashiCorp Vault cannot run here, so the guardrails test kit's Vault API server
(guardrails.testing.VaultServer, standard library only) serves the Vault HTTP API from this
process.
"""

from __future__ import annotations

import os
import re
import time

import httpx
import pytest
import yaml

from .test_e2e import Browser, make_dev

pytestmark = pytest.mark.slow
TTL = 4.0


@pytest.fixture
def vault():
    from guardrails.testing import VaultServer

    with VaultServer() as server:
        yield server


@pytest.fixture
def app_on_vault(set_up, vault, tmp_path):
    app = set_up["defaults"]
    values = {
        "session_key": "e2e-session-key-from-vault-" + "s" * 20,
        "oidc_client_secret": "e2e-oidc-client-secret-from-vault",
    }
    db_file = tmp_path / "from-vault.db"
    vault.put("kv", "apps/leave-requests/web", values)
    vault.put("kv", "apps/leave-requests/db", {"url": f"sqlite:///{db_file}"})
    policy = vault.policy("leave-requests", "kv/data/apps/leave-requests/*")
    role_id, secret_id = vault.add_approle("leave-requests", [policy], token_ttl=600)
    (tmp_path / "secret-id").write_text(secret_id)
    manifest = yaml.safe_load((app / "microapp.yaml").read_text())
    manifest["secrets"] = {
        "session-key": "vault:kv/apps/leave-requests/web#session_key",
        "sso-client-secret": "vault:kv/apps/leave-requests/web#oidc_client_secret",
        "database-url": "vault:kv/apps/leave-requests/db#url",
    }
    (tmp_path / "microapp.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    env = {
        **os.environ,
        "MICROAPP_MANIFEST": str(tmp_path / "microapp.yaml"),
        "MICROAPP_AUDIT_FILE": str(tmp_path / "audit.jsonl"),
        "MICROAPP_SECRETS_TTL": str(TTL),
        "VAULT_ADDR": vault.url,
        "VAULT_ROLE_ID": role_id,
        "VAULT_SECRET_ID_FILE": str(tmp_path / "secret-id"),
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("DATABASE_URL", None)
    log = []
    with make_dev(app, env=env, log=log) as url:
        yield url, values, db_file
    output = log[0]
    for value in values.values():
        assert value not in output  # no secret value in the app's logs


def test_app_on_vault_serves_until_the_cache_ttl_then_503_then_recovers(app_on_vault, vault):
    url, values, db_file = app_on_vault
    browser = Browser(url)
    page = browser.sign_in("requester@example.com")
    assert "Demo Requester" in page.text
    created = browser.post("/requests", title="Laptop stand", details="", action="submit")
    assert created.status_code == 200 and db_file.exists()  # the database named in Vault

    vault.down()
    down_at, timeline = time.monotonic(), []
    while True:
        answer = browser.http.get(f"{url}/")
        timeline.append((round(time.monotonic() - down_at, 1), answer.status_code))
        if answer.status_code != 200:
            break
        assert "Laptop stand" in answer.text
        time.sleep(0.25)
    print(f"\nVault stopped; the app answered: {timeline}")
    served_for = timeline[-1][0]
    assert len(timeline) > 1 and TTL / 2 - 0.5 <= served_for <= TTL + 2
    assert answer.status_code == 503 and answer.headers["retry-after"] == "30"
    message = re.search(r"<p>(This app cannot read the credentials[^<]+)</p>", answer.text)[1]
    print(f"503 page says: {message}")
    assert "secrets store (Vault)" in message and "Nothing was changed" in message
    health = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "degraded" and health["secrets"] == "unavailable"

    vault.up()
    up_at = time.monotonic()
    while (answer := browser.http.get(f"{url}/")).status_code != 200:
        assert time.monotonic() - up_at < 20, "the app did not recover"
        time.sleep(0.25)
    print(f"Vault back; the app served again after {time.monotonic() - up_at:.1f} s")
    assert "Laptop stand" in answer.text and "Demo Requester" in answer.text  # still signed in
    for value in values.values():
        assert value not in answer.text
