"""Read the audit trail back: who did what to one resource, newest first (for pages).

Reads the running app's hash-chained JSONL file; an app whose events go only to a SIEM has no
local trail and gets an empty list.

A page view must not read the whole file (it grows with every action). Each process keeps a
small index: for the resources asked about recently (at most MAX_RESOURCES, least recently used
dropped) the byte positions of their last MAX_EVENTS events, and how far the file has been
read. A view reads only what was appended since the last one (and the few lines it shows); the
first view of a resource not in the index scans the file once. When audit events live in the
database this becomes an indexed query instead.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from guardrails.auditing.log import JsonlChainSink
from guardrails.core.context import current_runtime

MAX_RESOURCES = 4096
MAX_EVENTS = 200  # per resource; a longer `limit` reads the file
MARK = b'"resource":{'
Key = tuple[str, str]


def _key_of(line: bytes) -> Key | None:
    if MARK not in line:
        return None
    try:  # a damaged line is skipped (`python -m guardrails audit verify` reports it)
        resource = json.loads(line).get("resource")
        return (resource["type"], resource["id"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class TrailIndex:
    """Positions of recent events per resource in one JSONL file, kept up to date by reading
    only the bytes appended since the last call. Bounded: MAX_RESOURCES x MAX_EVENTS."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self._reset(None)

    def _reset(self, inode: int | None) -> None:
        self.inode, self.offset = inode, 0
        self.known: OrderedDict[Key, deque[tuple[int, int]]] = OrderedDict()

    def _lines(self, fh, start: int, end: int):
        """(offset, line) of each complete line in [start, end)."""
        fh.seek(start)
        position = start
        while position < end:
            line = fh.readline()
            if not line.endswith(b"\n"):  # being written: next time
                return
            yield position, line
            position += len(line)

    def _catch_up(self, fh, size: int) -> None:
        for position, line in self._lines(fh, self.offset, size):
            key = _key_of(line)
            if key is not None and key in self.known:
                self.known[key].append((position, len(line)))
            self.offset = position + len(line)

    def _scan_for(self, fh, key: Key) -> deque[tuple[int, int]]:
        found: deque[tuple[int, int]] = deque(maxlen=MAX_EVENTS)
        for position, line in self._lines(fh, 0, self.offset):
            if _key_of(line) == key:
                found.append((position, len(line)))
        return found

    def events(self, key: Key, limit: int) -> list[dict[str, Any]]:
        with self.lock, self.path.open("rb") as fh:
            stat = os.fstat(fh.fileno())
            if stat.st_ino != self.inode or stat.st_size < self.offset:  # replaced or cut
                self._reset(stat.st_ino)
            self._catch_up(fh, stat.st_size)
            if key not in self.known:
                self.known[key] = self._scan_for(fh, key)
                while len(self.known) > MAX_RESOURCES:
                    self.known.popitem(last=False)
            self.known.move_to_end(key)
            spots = list(self.known[key])[-limit:]
            events = []
            for position, length in reversed(spots):
                try:
                    events.append(json.loads(os.pread(fh.fileno(), length, position)))
                except ValueError:
                    continue
            return events


_indexes: dict[Path, TrailIndex] = {}  # one per audit file (one per app in a process)
_indexes_lock = threading.Lock()


def _index(path: Path) -> TrailIndex:
    with _indexes_lock:
        if path not in _indexes:
            if len(_indexes) >= 16:  # tests build many apps; a real process has one file
                _indexes.clear()
            _indexes[path] = TrailIndex(path)
        return _indexes[path]


def trail(resource: tuple[str, Any], limit: int = 50) -> list[dict[str, Any]]:
    """The last `limit` events about `resource` (type, id), newest first."""
    rt = current_runtime()
    sinks = [s for s in (rt.audit_log.sinks if rt else []) if isinstance(s, JsonlChainSink)]
    if not sinks or not sinks[0].path.exists():
        return []
    key = (resource[0], str(resource[1]))
    if limit > MAX_EVENTS:  # more than the index keeps: a one-off full read
        return _full(sinks[0].path, key, limit)
    return _index(sinks[0].path.resolve()).events(key, limit)


def _full(path: Path, key: Key, limit: int) -> list[dict[str, Any]]:
    found: deque[dict[str, Any]] = deque(maxlen=limit)
    with path.open("rb") as fh:
        for line in fh:
            if _key_of(line) == key:
                found.append(json.loads(line))
    return list(reversed(found))
