"""The test kit's seeding command fills an app's database in bulk, with matching audit events
that chain like real ones."""

import random

from sqlalchemy import func, select

from guardrails.auditing import chain
from guardrails.testing.seed import seed
from tests.seed_example import SeedExampleItem


def test_seed_inserts_rows_and_their_events_and_continues_after_existing_ids(runtime):
    rng = random.Random(1)  # noqa: S311 (made-up rows)
    assert seed(runtime, 7_000, rng, "tests.seed_example") == {"rows": 7_000, "events": 7_000}
    assert seed(runtime, 5, rng, "tests.seed_example") == {"rows": 5, "events": 5}
    with runtime.sessionmaker() as db:
        assert db.scalar(select(func.count()).select_from(SeedExampleItem)) == 7_005
        assert db.scalar(select(func.max(SeedExampleItem.id))) == 7_005
        owners = set(db.scalars(select(SeedExampleItem.owner).distinct()))
    issuer, subjects = runtime.sso_issuer, {u.rsplit("#", 1)[1] for u in owners}
    assert all(u.startswith(f"{issuer}#") for u in owners)  # ids as sign-in makes them
    assert {s for s in subjects if not s.startswith("user")} <= {
        f"{role}@example.com" for role in runtime.manifest.roles
    }
    check = chain.verify_db(runtime.engine, runtime.manifest.app_id)
    assert check.ok and check.events == 7_005
    with runtime.sessionmaker() as db:
        (last,) = chain.trail(db, ("item", 7005), limit=1)
    assert last["action"] == "item.create" and last["seq"] == 7_005
