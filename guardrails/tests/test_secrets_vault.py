"""The real hvac-based Vault client against a local Vault API.

HashiCorp Vault cannot run in every CI, so guardrails.testing.vault serves the documented API
for what the client uses (token lookup/renewal, AppRole and Kubernetes login, KV version 2,
namespaces, TTLs, 403s) and can be stopped, sealed and restarted. A shared fake clock makes
expiry and renewal visible without waiting.
"""

import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guardrails.core.settings import VaultSettings
from guardrails.secrets.store import SecretRef, SecretStore, SecretUnavailable, VaultRefused
from guardrails.secrets.vault import VaultClient
from guardrails.testing.vault import FakeClock, VaultServer, log_text, make_tls

DB_URL = "postgresql://hr_reader:Sup3r-s3cret@db.internal/hr"
REF = SecretRef.parse("vault:kv/apps/leave-requests/hr-db#url")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def vault(clock):
    with VaultServer(clock=clock) as server:
        server.put("kv", "apps/leave-requests/hr-db", {"url": DB_URL, "user": "hr_reader"})
        server.policy("leave-requests", "kv/data/apps/leave-requests/*")
        yield server


def store_for(vault, clock, ttl=300.0, tracer=None, **settings):
    client = VaultClient(VaultSettings(addr=vault.url, **settings), clock=clock, tracer=tracer)
    return SecretStore({"hr-db-url": REF}, vault=client, ttl=ttl, clock=clock, tracer=tracer)


def test_token_auth_reads_kv2_and_looks_the_token_up(vault, clock):
    token = vault.create_token(policies=["leave-requests"], ttl=3600)
    store = store_for(vault, clock, token=token)
    assert store.get("hr-db-url") == DB_URL
    assert vault.called("auth/token/lookup-self") == 1
    assert ("GET", "/v1/kv/data/apps/leave-requests/hr-db", "") in vault.calls


def test_a_bad_token_or_policy_fails_closed_with_a_clear_reason(vault, clock):
    with pytest.raises(SecretUnavailable, match="token was refused"):
        store_for(vault, clock, token="hvs.not-a-token").get("hr-db-url")
    other = vault.create_token(policies=[vault.policy("other", "kv/data/apps/other/*")])
    with pytest.raises(SecretUnavailable, match="policy must allow `read`"):
        store_for(vault, clock, token=other).get("hr-db-url")


def test_missing_deleted_and_keyless_secrets_are_refused(vault, clock):
    token = vault.root_token()
    missing = SecretStore(
        {"x": SecretRef.parse("vault:kv/apps/nope#url")},
        vault=VaultClient(VaultSettings(addr=vault.url, token=token), clock=clock),
        clock=clock,
    )
    with pytest.raises(SecretUnavailable, match="no secret at kv/apps/nope"):
        missing.get("x")
    wrong_key = SecretStore(
        {"x": SecretRef.parse("vault:kv/apps/leave-requests/hr-db#password")},
        vault=VaultClient(VaultSettings(addr=vault.url, token=token), clock=clock),
        clock=clock,
    )
    with pytest.raises(SecretUnavailable, match="no key 'password'"):
        wrong_key.get("x")
    vault.delete_latest("kv", "apps/leave-requests/hr-db")  # raise_on_deleted_version=True
    with pytest.raises(SecretUnavailable, match="latest version was deleted"):
        store_for(vault, clock, token=token).get("hr-db-url")


def test_namespace_is_sent(vault, clock):
    vault.put("kv", "apps/leave-requests/hr-db", {"url": "in-team-a"}, namespace="team-a")
    vault.policy("leave-requests", "kv/data/apps/leave-requests/*", namespace="team-a")
    token = vault.create_token(policies=["leave-requests"], namespace="team-a")
    assert store_for(vault, clock, token=token, namespace="team-a").get("hr-db-url") == "in-team-a"
    assert ("GET", "/v1/kv/data/apps/leave-requests/hr-db", "team-a") in vault.calls
    with pytest.raises(SecretUnavailable, match="token was refused"):  # wrong namespace: 403
        store_for(vault, clock, token=token).get("hr-db-url")


def test_approle_login_renewal_and_relogin_at_max_ttl(vault, clock, tmp_path):
    role_id, secret_id = vault.add_approle(
        "leave-requests", ["leave-requests"], token_ttl=60, token_max_ttl=150
    )
    (tmp_path / "secret-id").write_text(secret_id + "\n")
    store = store_for(
        vault,
        clock,
        ttl=30,
        auth_method="approle",
        role_id=role_id,
        secret_id_file=str(tmp_path / "secret-id"),
    )
    assert store.get("hr-db-url") == DB_URL
    assert vault.called("approle/login") == 1
    for _ in range(8):  # 8 x 25 s: every read re-fetches (cache TTL 30 s, refresh at 15 s)
        clock.advance(25)
        assert store.get("hr-db-url") == DB_URL
    assert vault.called("renew-self") >= 3  # renewed once two thirds of the lease had passed
    assert vault.called("approle/login") >= 2  # renewal capped at max TTL: logged in again
    wrong = store_for(vault, clock, auth_method="approle", role_id=role_id, secret_id="nope")
    with pytest.raises(SecretUnavailable, match="invalid role or secret ID"):
        wrong.get("hr-db-url")


def test_a_refused_renewal_leads_to_a_new_login(vault, clock):
    role_id, secret_id = vault.add_approle("leave-requests", ["leave-requests"], token_ttl=60)
    client = VaultClient(
        VaultSettings(addr=vault.url, auth_method="approle", role_id=role_id, secret_id=secret_id),
        clock=clock,
    )
    client.read(REF)
    token = client._client.token
    vault.tokens[token].renewable = False  # Vault now answers 400 "lease is not renewable"
    clock.advance(45)
    vault.calls.clear()
    assert client.read(REF)[0] == DB_URL
    assert vault.called("renew-self") == 1 and vault.called("approle/login") == 1
    assert client._client.token != token


def test_a_revoked_token_gets_one_fresh_login(vault, clock):
    role_id, secret_id = vault.add_approle("leave-requests", ["leave-requests"])
    client = VaultClient(
        VaultSettings(addr=vault.url, auth_method="approle", role_id=role_id, secret_id=secret_id),
        clock=clock,
    )
    client.read(REF)
    vault.revoke(client._client.token)
    assert client.read(REF)[0] == DB_URL
    assert vault.called("approle/login") == 2


def test_kubernetes_login_with_the_service_account_token(vault, clock, tmp_path):
    jwt = vault.add_kubernetes_role(
        "leave-requests", ["leave-requests"], service_account="leave-requests", sa_namespace="hr"
    )
    jwt_file = tmp_path / "token"
    jwt_file.write_text(jwt)
    settings = {"auth_method": "kubernetes", "kubernetes_jwt_file": str(jwt_file)}
    store = store_for(vault, clock, kubernetes_role="leave-requests", **settings)
    assert store.get("hr-db-url") == DB_URL
    body_role = [c for c in vault.calls if c[1] == "/v1/auth/kubernetes/login"]
    assert body_role
    with pytest.raises(SecretUnavailable, match='invalid role name "payroll"'):
        store_for(vault, clock, kubernetes_role="payroll", **settings).get("hr-db-url")
    jwt_file.write_text("not.a.jwt")
    with pytest.raises(SecretUnavailable, match="permission denied"):
        store_for(vault, clock, kubernetes_role="leave-requests", **settings).get("hr-db-url")


def test_token_renewal_before_expiry(vault, clock):
    token = vault.create_token(policies=["leave-requests"], ttl=90)
    store = store_for(vault, clock, ttl=20, token=token)
    for _ in range(10):  # 200 s on a 90 s token: only renewal keeps it alive
        clock.advance(20)
        assert store.get("hr-db-url") == DB_URL
    assert vault.called("renew-self") >= 2
    assert vault._live_token(token, "") is not None


def test_outage_serves_the_cache_until_it_expires_then_fails_closed_then_recovers(vault, clock):
    token = vault.create_token(policies=["leave-requests"])
    store = store_for(vault, clock, ttl=60, token=token)
    assert store.get("hr-db-url") == DB_URL
    vault.down()
    clock.advance(40)  # due for a refresh; Vault is down: the cached value still serves
    assert store.get("hr-db-url") == DB_URL
    clock.advance(15)
    assert store.get("hr-db-url") == DB_URL
    clock.advance(10)  # 65 s after the last successful read: expired
    with pytest.raises(SecretUnavailable) as unavailable:
        store.get("hr-db-url")
    assert "cannot be reached" in unavailable.value.reason and "expired" in unavailable.value.reason
    assert DB_URL not in str(unavailable.value)
    vault.up()
    clock.advance(store.retry)
    assert store.get("hr-db-url") == DB_URL
    vault.seal()  # a sealed Vault answers 503: same as down
    clock.advance(61)
    with pytest.raises(SecretUnavailable, match="Vault is sealed"):
        store.get("hr-db-url")
    vault.unseal()
    clock.advance(store.retry)
    assert store.get("hr-db-url") == DB_URL


def test_rotated_values_are_picked_up_at_refresh(vault, clock):
    store = store_for(vault, clock, ttl=60, token=vault.root_token())
    assert store.get("hr-db-url") == DB_URL
    vault.put("kv", "apps/leave-requests/hr-db", {"url": "postgresql://rotated@db/hr"})
    clock.advance(10)
    assert store.get("hr-db-url") == DB_URL  # cached
    clock.advance(25)
    assert store.get("hr-db-url") == "postgresql://rotated@db/hr"


def test_vault_cacert_is_honoured(tmp_path, clock):
    ca, cert, key = make_tls(tmp_path)
    with VaultServer(clock=clock, tls=(str(cert), str(key))) as vault:
        vault.put("kv", "apps/leave-requests/hr-db", {"url": DB_URL})
        token = vault.root_token()
        assert store_for(vault, clock, token=token, cacert=str(ca)).get("hr-db-url") == DB_URL
        with pytest.raises(SecretUnavailable, match="set VAULT_CACERT"):
            store_for(vault, clock, token=token).get("hr-db-url")


def test_reads_are_traced_without_the_value(vault, clock):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    store = store_for(vault, clock, ttl=60, tracer=tracer, token=vault.root_token())
    with log_text() as logs:
        store.get("hr-db-url")
        store.get("hr-db-url")
        vault.down()
        clock.advance(100)
        with pytest.raises(SecretUnavailable):
            store.get("hr-db-url")
    spans = exporter.get_finished_spans()
    reads = [s for s in spans if s.name == "secret.read"]
    assert len(reads) == 3
    assert {s.attributes["microapp.secret.name"] for s in reads} == {"hr-db-url"}
    assert [s.attributes.get("microapp.secret.cache") for s in reads][:2] == ["miss", "hit"]
    assert any(s.name == "vault kv read" for s in spans)
    dumped = json.dumps([s.to_json() for s in spans])
    assert "vault unreachable" in logs.getvalue()
    for text in (dumped, logs.getvalue()):
        assert DB_URL not in text and "Sup3r-s3cret" not in text


def test_a_short_lease_shortens_the_cache(clock):
    class Leased:  # a KV version 1 / dynamic secret answers with a lease
        reads = 0

        def read(self, ref):
            Leased.reads += 1
            return f"v{Leased.reads}", 10

    store = SecretStore({"db": REF}, vault=Leased(), ttl=300, clock=clock)
    assert store.get("db") == "v1"
    clock.advance(6)  # half of the 10 s lease
    assert store.get("db") == "v2"


def test_unknown_auth_method_or_missing_ca_file_is_refused(tmp_path):
    with pytest.raises(VaultRefused, match="unknown VAULT_AUTH_METHOD"):
        VaultClient(VaultSettings(addr="http://127.0.0.1:1", auth_method="userpass"))
    with pytest.raises(VaultRefused, match="VAULT_CACERT .* does not exist"):
        VaultClient(VaultSettings(addr="https://127.0.0.1:1", cacert=str(tmp_path / "nope.pem")))
