"""What one upstream knows of its etcd prefix, and how watch messages change it.

Pure: it takes the gateway's decoded JSON (``/v3/kv/range`` responses and
``/v3/watch`` results) and says what to do next. The rules:

- ``load(range)`` replaces everything; the range's header revision is applied.
- An event is applied only if its ``mod_revision`` is above the last applied
  revision, so a watch reopened from an older revision cannot apply it twice.
- A progress notification (no events) moves the applied revision to its header
  revision: etcd sends it only once every earlier event was delivered.
- A canceled watch with ``compact_revision``, a header revision below the last
  applied one, or another ``cluster_id`` (a compacted, restored or wiped etcd)
  means RESYNC: range again.
"""

from __future__ import annotations

import base64
import enum
import logging
from collections.abc import Mapping
from typing import Any

from proxy.config.model import UpstreamServer
from proxy.discovery.values import parse_value

log = logging.getLogger("grpc_proxy.etcd")


class Verdict(enum.Enum):
    NOTHING = "nothing"  # nothing that changes the pool
    CHANGED = "changed"  # the endpoint set changed: publish a new pool
    RESYNC = "resync"  # range again, then watch from its revision
    REOPEN = "reopen"  # the watch was canceled: open it again from revision + 1


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's GetPrefixRangeEnd: the prefix with its last byte below 0xff
    incremented (and what follows it dropped); b"\\0" (all keys) if none."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


class WatchState:
    __slots__ = ("name", "revision", "cluster_id", "entries", "warned", "events_applied", "reason")

    def __init__(self, name: str) -> None:
        self.name = name  # the upstream's, for messages
        self.revision = 0  # last applied etcd revision; 0: never synced
        self.cluster_id: str | None = None
        # key -> endpoint, for keys whose value parsed
        self.entries: dict[bytes, UpstreamServer] = {}
        # key -> the bad value already warned about: one warning per bad value
        self.warned: dict[bytes, bytes] = {}
        self.events_applied = 0
        self.reason = ""  # why the last RESYNC or REOPEN, for the log

    @property
    def synced(self) -> bool:
        return self.revision > 0

    def servers(self) -> list[UpstreamServer]:
        """The discovered endpoints, in key order (stable across rebuilds)."""
        return [self.entries[k] for k in sorted(self.entries)]

    def load(self, response: Mapping[str, Any]) -> bool:
        """A ``/v3/kv/range`` response over the whole prefix. True if the
        endpoint set changed."""
        header = response.get("header") or {}
        before = self.entries
        self.entries = {}
        seen: set[bytes] = set()
        for kv in response.get("kvs") or ():
            key = unb64(kv.get("key", ""))
            seen.add(key)
            self._put(key, unb64(kv.get("value", "")))
        for key in list(self.warned):
            if key not in seen:
                del self.warned[key]
        self.revision = int(header.get("revision", 0))
        self.cluster_id = header.get("cluster_id") or self.cluster_id
        return self.entries != before

    def apply(self, result: Mapping[str, Any]) -> Verdict:
        """One ``/v3/watch`` result (the object under ``"result"``)."""
        header = result.get("header") or {}
        if result.get("canceled"):
            compact = int(result.get("compact_revision", 0) or 0)
            if compact:
                self.reason = f"revision {self.revision + 1} is compacted (etcd kept {compact}+)"
                return Verdict.RESYNC
            self.reason = f"watch canceled: {result.get('cancel_reason') or 'no reason given'}"
            return Verdict.REOPEN
        cluster_id = header.get("cluster_id")
        if cluster_id and self.cluster_id and cluster_id != self.cluster_id:
            self.reason = f"etcd cluster id changed from {self.cluster_id} to {cluster_id}"
            return Verdict.RESYNC
        revision = int(header.get("revision", 0) or 0)
        if "revision" in header and revision < self.revision:
            self.reason = f"etcd revision went back from {self.revision} to {revision}"
            return Verdict.RESYNC
        events = result.get("events")
        if not events:
            if not result.get("created") and revision > self.revision:
                self.revision = revision  # a progress notification
            return Verdict.NOTHING
        before = dict(self.entries)
        top = self.revision
        for ev in events:
            kv = ev.get("kv") or {}
            mod = int(kv.get("mod_revision", 0) or 0)
            if mod <= self.revision:
                continue  # already applied: the watch restarted behind us
            key = unb64(kv.get("key", ""))
            if ev.get("type") == "DELETE":
                self.entries.pop(key, None)
                self.warned.pop(key, None)
            else:
                self._put(key, unb64(kv.get("value", "")))
            self.events_applied += 1
            top = max(top, mod)
        self.revision = top
        return Verdict.CHANGED if self.entries != before else Verdict.NOTHING

    def _put(self, key: bytes, value: bytes) -> None:
        try:
            server = parse_value(value)
        except ValueError as e:
            self.entries.pop(key, None)
            if self.warned.get(key) != value:
                self.warned[key] = value
                shown = key.decode("utf-8", "backslashreplace")
                log.warning('upstream "%s": skipping etcd key "%s": %s', self.name, shown, e)
            return
        self.warned.pop(key, None)
        self.entries[key] = server
