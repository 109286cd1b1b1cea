"""CPU per request quota check, in-process counts: `limits`' memory storage against
guardrails' LocalWindows, with no check at all as the anchor.

A steady stream of calls (one caller, `--rate` per second, as a signed-in user's requests reach
`enforce_quota`), for `--seconds` per run; the figure is the process's CPU time (every thread:
`limits`' memory storage does its expiry in timer threads) per call. The three take turns to go
first, round by round. The quota is `--limit` per minute (the bench's load test raises it to
a billion so one user can load the app; the manifest's default is 120).
`python bench/quota.py [--rate 250] [--seconds 4] [--rounds 3] [--limit 120]`
"""

from __future__ import annotations

import argparse
import statistics
import time

from guardrails.core.ratelimit import LocalWindows
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

KEY = ("app:user-limit:requests", "user-1")


def run(storage, limit: int, rate: float, seconds: float) -> float:
    """Microseconds of process CPU per call (the pacing sleep's own cost included)."""
    hit = MovingWindowRateLimiter(storage).hit if storage is not None else None
    item = RateLimitItemPerSecond(limit, 60)
    calls, cpu, started = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - started < seconds:
        if hit is not None:
            hit(item, *KEY)
        calls += 1
        time.sleep(1 / rate)
    return (time.process_time() - cpu) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=250.0, help="calls per second")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=120, help="the quota, per minute")
    args = parser.parse_args()
    kinds = {"none": lambda: None, "limits": MemoryStorage, "ours": LocalWindows}
    figures: dict[str, list[float]] = {name: [] for name in kinds}
    names = list(kinds)
    for round_ in range(args.rounds):
        first = round_ % len(names)  # each goes first in turn
        for name in names[first:] + names[:first]:
            figures[name].append(run(kinds[name](), args.limit, args.rate, args.seconds))
            print(f"round {round_ + 1}: {name:<6} {figures[name][-1]:7.1f} us", flush=True)
    none, theirs, ours = (statistics.median(figures[k]) for k in kinds)
    print(f"\nCPU per call, median of {args.rounds} rounds at {args.rate:g} calls/s")
    print(f"  no check (anchor)            {none:7.1f} us")
    print(f"  limits' memory storage       {theirs:7.1f} us   +{theirs - none:.1f} us per call")
    print(f"  LocalWindows (guardrails)    {ours:7.1f} us   +{ours - none:.1f} us per call")


if __name__ == "__main__":
    main()
