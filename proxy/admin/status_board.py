"""The stateful side of the status page: the last-minute rate window and its
samples, this process's pool snapshot, and, with several worker processes,
the snapshots the other workers share through files.

Rates, with one process or many, come from the request counters /metrics
exports, sampled over time into a ``RateWindow``: with one process the
in-memory counters are sampled every second (cheap), so the page has a full
minute from its first load; with workers, the merged counter files (every
worker's calls, those of exited workers included, so totals never drop) are
read only when a status request comes, by the worker that answers it (tens
of milliseconds with many series, off the trio thread). The page refreshes
every 2 s over one keep-alive connection, so one worker keeps answering and
its window fills up; after a minute without requests it starts over.

Pool state is each worker's own (endpoint health, active streams, fails):
every worker writes its snapshot as ``status_<pid>.json`` beside the metric
files once a second (atomically, a few KB), and the answering worker merges
its own live snapshot with those of the other live workers.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from proxy.admin import status
from proxy.metrics.rates import SPAN, CallKey, RateWindow, method_rates
from proxy.metrics.sources import Sources

log = logging.getLogger("grpc_proxy.admin")

SNAPSHOT_PREFIX = "status_"
STALE = 10.0  # seconds: an older snapshot file is not a live worker's


def snapshot_path(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{SNAPSHOT_PREFIX}{pid}.json")


def remove_snapshot(directory: str, pid: int) -> None:
    """For the master when a worker exits: its pool view leaves the page."""
    with contextlib.suppress(OSError):
        os.unlink(snapshot_path(directory, pid))


class StatusBoard:
    """``totals`` reads the cumulative request counters ((service, method,
    upstream, code) -> calls) from where /metrics reads them; ``share_dir``:
    the directory every worker writes its snapshot to (None: one process)."""

    def __init__(
        self,
        sources: Sources,
        totals: Callable[[], Mapping[CallKey, float]],
        *,
        share_dir: str | None = None,
        pid: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        span: float = SPAN,
    ) -> None:
        self.sources = sources
        self.totals = totals
        self.share_dir = share_dir
        self.pid = pid if pid is not None else os.getpid()
        self.clock = clock
        self.wall = wall
        self.window: RateWindow[CallKey] = RateWindow(span)
        self._lock = threading.Lock()  # samples come from the trio thread and from threads

    # ------------------------------------------------------------- rates

    def sample(self) -> None:
        """Read the counters into the window (any thread). Under the lock, so
        samples reach the window in the order they were read."""
        with self._lock:
            totals = self.totals()
            self.window.add(self.clock(), totals)

    def calls(self) -> dict[str, Any]:
        with self._lock:
            increase, seconds = self.window.increase()
            totals = self.window.totals()
        return status.calls(method_rates(increase, totals), seconds, self.window.span)

    # --------------------------------------------------------- snapshots

    def capture(self) -> dict[str, Any]:
        """This process's view of every pool: on the trio thread (it reads
        live endpoint state)."""
        src = self.sources
        config = src.config()
        upstreams = config.upstreams if config is not None else {}
        return status.local_snapshot(
            src.relay.pools,
            upstreams,
            src.etcd(),
            src.upstream_connections(),
            src.relay.clock(),
            self.pid,
        )

    def publish(self, snapshot: Mapping[str, Any]) -> None:
        """Workers: write ``snapshot`` for the others (any thread)."""
        if self.share_dir is None:
            return
        path = snapshot_path(self.share_dir, self.pid)
        tmp = os.path.join(self.share_dir, f".{SNAPSHOT_PREFIX}{self.pid}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(snapshot, f, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot write the status snapshot %s: %s", path, e)

    def withdraw(self) -> None:
        if self.share_dir is not None:
            remove_snapshot(self.share_dir, self.pid)

    def peers(self) -> list[dict[str, Any]]:
        """The snapshots of the other live workers (any thread)."""
        if self.share_dir is None:
            return []
        out = []
        now = self.wall()
        for path in sorted(glob.glob(os.path.join(self.share_dir, f"{SNAPSHOT_PREFIX}*.json"))):
            name = os.path.basename(path)[len(SNAPSHOT_PREFIX) : -len(".json")]
            if not name.isdigit() or int(name) == self.pid or not _alive(int(name)):
                continue
            try:
                if now - os.path.getmtime(path) > STALE:
                    continue
                with open(path, encoding="utf-8") as f:
                    snap = json.load(f)
            except (OSError, ValueError):
                continue  # gone meanwhile, or not ours
            if isinstance(snap, dict):
                out.append(snap)
        return out

    # ---------------------------------------------------------- document

    def document(
        self, snapshot: Mapping[str, Any], not_ready: str | None, draining: bool
    ) -> dict[str, Any]:
        """The whole /status.json (any thread): samples the counters first, so
        the rates are as fresh as the last flush."""
        self.sample()
        return status.document(
            config=self.sources.config(),
            snapshots=[snapshot, *self.peers()],
            calls_part=self.calls(),
            pid=self.pid,
            time=self.wall(),
            not_ready=not_ready,
            draining=draining,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
