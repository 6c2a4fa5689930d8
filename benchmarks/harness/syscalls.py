"""Counting a proxy's system calls during a run with `perf stat` (run.py --syscalls).

Counting a tracepoint costs the counted process about 0.1 us per system call
(measured on a getppid loop: 248 ns per call bare, 363 ns counted), so the counts
come from a separate run after the measured one, whose CPU figures stay clean.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

EVENT = "raw_syscalls:sys_enter"
ATTACH_SECONDS = 0.3  # perf needs a moment to open its counters on every thread
STOP_TIMEOUT = 10.0

T = TypeVar("T")


def unavailable() -> str | None:
    """Why `perf stat` cannot count system calls here, or None if it can."""
    perf = shutil.which("perf")
    if perf is None:
        return "perf not found (Debian: apt-get install -y linux-perf)"
    try:
        probe = subprocess.run(
            [perf, "stat", "-x,", "-e", EVENT, "--", "true"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return f"`perf stat -e {EVENT} -- true` did not finish in 30 s"
    if probe.returncode != 0 or "<not supported>" in probe.stderr:
        reason = probe.stderr.strip().splitlines()[-1:] or ["no output"]
        return (
            f"perf cannot count {EVENT}: {reason[0]} (needs root or kernel.perf_event_paranoid=-1)"
        )
    return None


def _parse(text: str) -> int | None:
    """The count of EVENT in `perf stat -x,` output."""
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] == EVENT:
            with contextlib.suppress(ValueError):
                return int(fields[0])
    return None


def counted(pids: Iterable[int], run: Callable[[], T]) -> tuple[T, int | None]:
    """run() with every thread of pids counted: (its result, system calls made)."""
    perf = shutil.which("perf")
    pid_list = ",".join(str(p) for p in pids)
    if perf is None or not pid_list:
        return run(), None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "perf.csv"
        proc = subprocess.Popen(
            [perf, "stat", "-x,", "-e", EVENT, "-o", str(out), "-p", pid_list],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(ATTACH_SECONDS)
            result = run()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        count = _parse(out.read_text()) if out.is_file() else None
    return result, count
