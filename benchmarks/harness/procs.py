"""Starting and stopping processes, and reading their CPU time and memory from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """A process started by the harness, with its output going to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    # Every descendant seen so far, so that stop() can reach orphans by PID.
    known_pids: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        pids = tree_pids(self.pid) if self.alive() else []
        self.known_pids.update(pids)
        return pids

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """Prefix cmd with taskset; taskset execs, so the PID is the command's own."""
    return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


def start(
    name: str,
    cmd: Sequence[str],
    log_dir: Path,
    cpus: str | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Proc:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            pinned(cmd, cpus),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    return Proc(name=name, popen=popen, log_path=log_path)


def stop(proc: Proc, timeout: float = 5.0) -> None:
    """SIGTERM the process, then SIGKILL it and any descendant it left behind."""
    proc.tree()
    if proc.alive():
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.kill()
            proc.popen.wait(timeout=timeout)
    for pid in proc.known_pids - {proc.pid}:
        if _ppid_or_none(pid) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _ppid_or_none(pid: int) -> int | None:
    fields = _read_stat(pid)
    return int(fields[1]) if fields else None


def tree_pids(root: int) -> list[int]:
    """root and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = _ppid_or_none(int(entry))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry))
    result, todo = [], [root]
    while todo:
        pid = todo.pop()
        result.append(pid)
        todo.extend(children.get(pid, []))
    return result


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """utime+stime of each process (all its threads), in seconds."""
    out: dict[int, float] = {}
    for pid in pids:
        fields = _read_stat(pid)
        if fields:
            # utime and stime are fields 14 and 15 of the full line.
            out[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots; processes born in between count whole."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def system_busy_seconds() -> float:
    """CPU seconds all CPUs spent running processes (user, nice, system) since boot.

    Interrupt and softirq time is left out: it is not charged to any process, and
    much of it is the loopback traffic of the benchmark itself.
    """
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:3]) / CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pids: Iterable[int]) -> int:
    """Sum of VmRSS (shared pages are counted once per process)."""
    return sum(_status_kib(pid, "VmRSS") for pid in pids)


def pss_kib(pids: Iterable[int]) -> int:
    """Sum of proportional set size (shared pages split between sharers)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


def free_ports(count: int) -> list[int]:
    """count distinct free TCP ports on 127.0.0.1 (held open together while picking)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, timeout: float, proc: Proc | None = None) -> bool:
    """Wait until 127.0.0.1:port accepts connections (or proc exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False
