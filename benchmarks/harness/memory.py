"""Proxy memory: idle, and with many long-lived streams open through it."""

from __future__ import annotations

import contextlib
import json
import selectors
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import procs
from harness.targets import Target

OPEN_TIMEOUT = 90.0
HOLD_LIMIT_S = 120.0  # the client closes its streams by itself after this


@dataclass
class MemoryResult:
    target: str
    idle_rss_kib: int | None = None
    idle_pss_kib: int | None = None
    before_rss_kib: int | None = None
    streams_wanted: int = 0
    streams_open: int = 0
    open_rss_kib: int | None = None
    open_pss_kib: int | None = None
    error: str | None = None

    @property
    def delta_rss_kib(self) -> int | None:
        if self.open_rss_kib is None or self.before_rss_kib is None:
            return None
        return self.open_rss_kib - self.before_rss_kib


def _read_json_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, object] | None:
    """The next JSON line on proc's stdout, waiting at most timeout seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                continue
            line = proc.stdout.readline()
            if not line:
                return None
            with contextlib.suppress(json.JSONDecodeError):
                return dict(json.loads(line))
    return None


def _start_holder(
    stream_client: Path, port: int, streams: int, channels: int, cpus: str | None
) -> subprocess.Popen[str]:
    cmd = [
        str(stream_client),
        "--mode",
        "hold",
        "--target",
        f"127.0.0.1:{port}",
        "--streams",
        str(streams),
        "--channels",
        str(channels),
        "--size",
        "64",
        "--duration",
        f"{HOLD_LIMIT_S:g}",
    ]
    return subprocess.Popen(
        procs.pinned(cmd, cpus),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _release(holder: subprocess.Popen[str]) -> dict[str, object] | None:
    """Tell the client to close its streams; its final JSON line, or None."""
    assert holder.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        holder.stdin.write("close\n")
        holder.stdin.close()
    final = _read_json_line(holder, OPEN_TIMEOUT)
    try:
        holder.wait(timeout=10)
    except subprocess.TimeoutExpired:
        holder.kill()
        holder.wait(timeout=10)
    return final


def hold_streams(
    target: Target, stream_client: Path, streams: int, channels: int, cpus: str | None
) -> MemoryResult:
    """Open `streams` Bidi streams through the proxy, measure its memory, close them."""
    result = MemoryResult(target.name, streams_wanted=streams)
    result.idle_rss_kib = _int_or_none(target.info.get("idle_rss_kib"))
    result.idle_pss_kib = _int_or_none(target.info.get("idle_pss_kib"))
    if not target.usable:
        result.error = target.error
        return result
    result.before_rss_kib = procs.rss_kib(target.pids())
    holder = _start_holder(stream_client, target.port, streams, channels, cpus)
    try:
        ready = _read_json_line(holder, OPEN_TIMEOUT)
        if ready is None or ready.get("event") != "ready":
            result.error = "stream client did not report its streams open"
            return result
        result.streams_open = int(str(ready.get("open", 0)))
        time.sleep(0.5)
        pids = target.pids()
        result.open_rss_kib, result.open_pss_kib = procs.rss_kib(pids), procs.pss_kib(pids)
    finally:
        final = _release(holder)
    if result.streams_open < streams:
        result.error = f"only {result.streams_open} of {streams} streams opened"
    elif final is None or final.get("failed"):
        result.error = f"closing the streams went wrong: {final}"
    return result


def _int_or_none(value: object) -> int | None:
    return int(str(value)) if value is not None else None
