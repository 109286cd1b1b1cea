"""A tiny app seed module for tests/test_seed.py (the shape of an app's src/app/seed.py)."""

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from guardrails import Model


class SeedExampleItem(Model):
    __tablename__ = "seed_example_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(254))


MODEL = SeedExampleItem
RESOURCE = "item"


def rows(count, rng, users):
    for _ in range(count):
        yield {"owner": rng.choice(users)}


def events(values):
    yield {"action": "item.create", "actor": values["owner"], "at": dt.datetime(2026, 1, 2)}
