"""The test kit's seeding command fills an app's database in bulk, with matching audit events
that chain like real ones."""

import random

from sqlalchemy import func, select

from guardrails import verify_audit
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
    assert {u for u in owners if not u.startswith("user")} <= {
        f"{role}@example.com" for role in runtime.manifest.roles
    }
    result = verify_audit(runtime.settings.audit_file)
    assert result.ok and result.events == 7_005
    last = runtime.settings.audit_file.read_text().splitlines()[-1]
    assert '"resource":{"id":"7005","type":"item"}' in last and '"action":"item.create"' in last
