"""Two app processes (replicas) on one PostgreSQL database, sharing limits through Redis and
delivering the audit trail to one SIEM receiver: real servers, real processes, no mocks.

One test walks through the whole story, so the processes start once (cost: a few seconds).
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml
from sqlalchemy import text

from guardrails.auditing import chain
from guardrails.core import db
from guardrails.testing import free_port, local_access_token

from .test_audit import fresh_url

HERE = Path(__file__).resolve().parent
APP_ID = "guardrails-test-app"


class Receiver:
    """A SIEM's HTTP intake: keeps every event it is sent; can be stopped and started."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: list[dict] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.events.extend(json.loads(body)["events"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Replica:
    def __init__(self, env: dict, cwd: Path):
        self.port = free_port()
        self.env = {**env, "MICROAPP_BASE_URL": f"http://localhost:{self.port}"}
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [sys.executable, "-m", "uvicorn", "tests.replica_app:build", "--factory",
                "--port", str(self.port), "--app-dir", str(HERE.parent), "--log-level",
                "warning"]  # fmt: skip
        log = (self.cwd / f"replica-{self.port}.log").open("ab")
        self.process = subprocess.Popen(args, env=self.env, cwd=self.cwd, stdout=log, stderr=log)  # noqa: S603
        deadline = time.monotonic() + 90  # a loaded CI machine starts Python slowly
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.cwd / f"replica-{self.port}.log").read_text()
                raise RuntimeError(f"replica on {self.port} did not start: {log[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


def busy_manifest(tmp_path: Path) -> Path:
    """The test manifest with room for this test's requests: one user makes about 200 a minute,
    above the default request quota (the per-action budget of step 3 is what is tested)."""
    data = yaml.safe_load((HERE / "data/microapp.yaml").read_text())
    data["quotas"]["requests_per_minute"] = 10_000
    path = tmp_path / "microapp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_replicas_keep_one_chain_one_decision_one_budget(
    tmp_path, request, idp, manifest, demo, redis_url
):
    url = fresh_url("postgresql", tmp_path, request)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MICROAPP_", "OTEL_"))},
        "DATABASE_URL": url,
        "MICROAPP_MANIFEST": str(busy_manifest(tmp_path)),
        "MICROAPP_DOTENV": str(tmp_path / "no.env"),
        "MICROAPP_SSO_ISSUER": idp,
        "MICROAPP_SESSION_KEY": "replica-session-key-" + "x" * 32,
        "MICROAPP_AUDIT_FILE": "none",
        "RATELIMIT_STORAGE_URL": redis_url,
        "OTEL_SDK_DISABLED": "true",
        "PYTHONPATH": str(HERE.parent),
    }
    receiver = Receiver()
    receiver.start()
    env["MICROAPP_AUDIT_HTTP_URL"] = receiver.url
    # The migration step, as the deployment's Job runs it; then the app's own table.
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "guardrails", "db", "upgrade"], env=env, cwd=tmp_path, check=True
    )
    engine = db.make_engine(db.with_driver(url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE thing (id INTEGER PRIMARY KEY, status TEXT)"))
    token = local_access_token(idp, manifest.sso_client_id, demo["admin"])
    auth = {"authorization": f"Bearer {token}"}
    one, two = Replica(env, tmp_path), Replica(env, tmp_path)
    one.start()
    two.start()
    try:
        # 1. Concurrent creations through both replicas: one chain.
        def create(replica, ids):
            with httpx.Client(headers=auth, timeout=30) as http:
                for i in ids:
                    assert http.post(f"{replica.url}/things/{i}").status_code == 200

        workers = [
            threading.Thread(target=create, args=(r, range(start, start + 15)))
            for r, start in ((one, 1), (two, 101), (one, 201), (two, 301))
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

        # 2. Two approvers at the same moment, one through each replica: exactly one wins.
        for thing in range(1, 11):
            barrier, codes = threading.Barrier(2), []

            def approve(replica, thing=thing, barrier=barrier, codes=codes):
                barrier.wait()
                codes.append(httpx.post(f"{replica.url}/things/{thing}/approve", headers=auth,
                                        timeout=30).status_code)  # fmt: skip

            pair = [threading.Thread(target=approve, args=(r,)) for r in (one, two)]
            for t in pair:
                t.start()
            for t in pair:
                t.join()
            assert sorted(codes) == [200, 409], codes

        # 3. One budget across both replicas (3 a minute, counted in Redis).
        codes = [httpx.get(f"{r.url}/limited", headers=auth).status_code for r in (one, two) * 2]
        assert codes == [200, 200, 200, 429]

        # 4. The SIEM goes away; actions go on; it comes back and gets everything once.
        receiver.stop()
        create(one, range(401, 406))
        create(two, range(406, 411))
        time.sleep(1)
        receiver.start()

        # 5. A replica killed (SIGKILL) again and again in the middle of actions.
        stop = threading.Event()

        def hammer(start):
            with httpx.Client(headers=auth, timeout=5) as http:
                for i in range(start, start + 200):
                    if stop.is_set():
                        return
                    try:
                        http.post(f"{two.url}/things/{i}")
                    except httpx.HTTPError:
                        time.sleep(0.05)

        for round_ in range(2):
            stop.clear()
            hammering = threading.Thread(target=hammer, args=(1000 + 1000 * round_,))
            hammering.start()
            time.sleep(random.uniform(0.3, 0.8))  # noqa: S311
            two.kill()
            stop.set()
            hammering.join()
            two.start()
        create(two, [9999])  # the restarted replica works
    finally:
        one.stop()
        two.stop()

    # No change without its event, no event without its change; one decision per thing.
    with engine.connect() as conn:
        things = {r[0]: r[1] for r in conn.execute(text("SELECT id, status FROM thing"))}
    check = chain.verify_db(engine, APP_ID)
    assert check.ok, check.problems
    with db.make_sessionmaker(engine)() as session:
        events = chain.events_after(session, 0, 100_000)
    created = [int(e["resource"]["id"]) for e in events if e["action"] == "thing.create"]
    assert sorted(created) == sorted(things)
    approved = [e for e in events if e["action"] == "thing.approve" and e["result"] == "success"]
    assert sorted(int(e["resource"]["id"]) for e in approved) == list(range(1, 11))
    assert [t for t, status in things.items() if status == "approved"] == list(range(1, 11))
    # The receiver got every event, in chain order, once by id: delivery is at least once,
    # so a batch sent by a replica killed before it moved its cursor comes again (a SIEM
    # de-duplicates by event_id). The last events may still be on their way: wait for them.
    deadline = time.monotonic() + 30
    while len({e["event_id"] for e in receiver.events}) < len(events):
        assert time.monotonic() < deadline, (len(receiver.events), len(events))
        time.sleep(0.2)
    receiver.stop()
    first_seen = list({e["event_id"]: e["seq"] for e in reversed(receiver.events)}.values())
    assert sorted(first_seen) == list(range(1, len(events) + 1))
    seqs = [e["seq"] for e in receiver.events]
    assert all(b == a + 1 or b <= a for a, b in zip(seqs, seqs[1:], strict=False))  # in order,
    # or going back to redeliver, never skipping ahead
    engine.dispose()
