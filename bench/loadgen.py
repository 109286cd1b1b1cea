"""A small closed-loop HTTP/1.1 load generator (standard library only), used when `wrk` is
not installed. Keep-alive connections to 127.0.0.1 only; it stops by itself after
--requests responses or --duration seconds, whichever comes first, and prints one JSON line
in the same shape as bench/wrk_report.lua.

    python bench/loadgen.py --port 8000 --path /bench/page --connections 8 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

HOST = "127.0.0.1"  # never anything else: this is a benchmark, not a load-testing tool


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def run(args: argparse.Namespace) -> dict:
    body = args.body.encode() if args.body else b""
    head = [f"{args.method} {args.path} HTTP/1.1", f"Host: {HOST}:{args.port}", "Accept: text/html"]
    if args.cookie:
        head.append(f"Cookie: {args.cookie}")
    if body:
        head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    statuses = {"ok": 0, "other": 0, "first_other": 0, "errors": 0}
    started = time.perf_counter()
    deadline = started + args.duration
    budget = [args.requests]

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, args.port)
        try:
            while budget[0] > 0 and time.perf_counter() < deadline:
                budget[0] -= 1
                sent = time.perf_counter()
                writer.write(request)
                try:
                    status = await asyncio.wait_for(_read_response(reader), args.timeout)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    statuses["errors"] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, args.port)
                    continue
                latencies.append(time.perf_counter() - sent)
                if status in args.ok_status:
                    statuses["ok"] += 1
                else:
                    statuses["other"] += 1
                    statuses["first_other"] = statuses["first_other"] or status
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(args.connections)))
    elapsed = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {
        "tool": "python-loadgen",
        "requests": len(latencies),
        "ok": statuses["ok"],
        "non_ok": statuses["other"],
        "first_non_ok_status": statuses["first_other"],
        "socket_errors": statuses["errors"],
        "duration_s": elapsed,
        "latency_ms": {
            "p50": percentile(ms, 50),
            "p90": percentile(ms, 90),
            "p99": percentile(ms, 99),
            "mean": sum(ms) / len(ms) if ms else 0.0,
            "max": ms[-1] if ms else 0.0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--cookie", default="")
    parser.add_argument("--body", default="")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument(
        "--ok-status", type=int, action="append", help="a status that counts as ok (default 200)"
    )
    args = parser.parse_args()
    args.ok_status = set(args.ok_status or [200])
    print("LOADGEN-JSON " + json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
