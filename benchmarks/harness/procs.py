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


def parse_cpus(cpus: str) -> set[int]:
    """A taskset-style CPU list ("0", "1,3", "0-2") as a set."""
    out: set[int] = set()
    for part in cpus.split(","):
        lo, _, hi = part.strip().partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def set_affinity(pids: Iterable[int], cpus: set[int]) -> None:
    """Move every thread of each process onto cpus (threads and children started
    later inherit it). Threads that exit meanwhile are skipped."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                os.sched_setaffinity(int(tid), cpus)


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


@dataclass
class CpuSample:
    """One process's CPU time at one moment, read two ways."""

    stat_s: float  # utime+stime from /proc/PID/stat: whole process, clock ticks (10 ms)
    threads_ns: dict[int, int]  # TID -> run time from /proc/PID/task/TID/schedstat (ns)
    user_s: float = 0.0  # utime alone (the rest of stat_s is system time)
    # TID -> times the thread was put on a CPU (schedstat's third field): one per
    # wake-up from a sleep, plus one per preemption.
    threads_runs: dict[int, int] = field(default_factory=dict)


# The scheduler's run time of exited threads is only in /proc/PID/stat; when the
# tick-based delta exceeds the schedstat one by more than this, a thread died in
# between and the tick-based figure is used.
_STAT_SLACK_S = 3.0 / CLOCK_TICKS


def _schedstat(pid: int, tid: str) -> tuple[int, int] | None:
    """(run time in ns, times put on a CPU) of one thread."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            fields = f.read().split()
        return int(fields[0]), int(fields[2])
    except (OSError, ValueError, IndexError):
        return None


def cpu_sample(pids: Iterable[int]) -> dict[int, CpuSample]:
    """CPU time of each process: per-thread schedstat (ns) and the stat tick count."""
    out: dict[int, CpuSample] = {}
    for pid in pids:
        fields = _read_stat(pid)
        if not fields:
            continue
        # utime and stime are fields 14 and 15 of the full line.
        user_s = int(fields[11]) / CLOCK_TICKS
        stat_s = user_s + int(fields[12]) / CLOCK_TICKS
        threads: dict[int, int] = {}
        runs: dict[int, int] = {}
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            tids = []
        for tid in tids:
            sched = _schedstat(pid, tid)
            if sched is not None:
                threads[int(tid)], runs[int(tid)] = sched
        out[pid] = CpuSample(stat_s, threads, user_s, runs)
    return out


def cpu_used(
    before: dict[int, CpuSample], after: dict[int, CpuSample], source: str = "schedstat"
) -> float:
    """CPU seconds used between two samples; processes (threads) born in between count whole.

    source "schedstat": the sum over every thread of /proc/PID/task/*/schedstat
    (nanoseconds), falling back to /proc/PID/stat for a process without schedstat
    or one that lost a thread in between; "stat": /proc/PID/stat only (utime +
    stime, counted in clock ticks).
    """
    total = 0.0
    for pid, a in after.items():
        b = before.get(pid)
        stat_delta = a.stat_s - (b.stat_s if b else 0.0)
        if source == "stat" or not a.threads_ns:
            total += stat_delta
            continue
        old = b.threads_ns if b else {}
        sched_delta = sum(ns - old.get(tid, 0) for tid, ns in a.threads_ns.items()) / 1e9
        total += stat_delta if stat_delta > sched_delta + _STAT_SLACK_S else sched_delta
    return total


def cpu_split(
    before: dict[int, CpuSample], after: dict[int, CpuSample]
) -> tuple[float, float, int]:
    """(user seconds, system seconds, times put on a CPU) between two samples, over
    every process (thread) in ``after``; user and system from /proc/PID/stat, whose
    10 ms ticks the kernel scales to the scheduler's run time."""
    user = system = 0.0
    runs = 0
    for pid, a in after.items():
        b = before.get(pid)
        u = a.user_s - (b.user_s if b else 0.0)
        user += u
        system += a.stat_s - (b.stat_s if b else 0.0) - u
        old = b.threads_runs if b else {}
        runs += sum(n - old.get(tid, 0) for tid, n in a.threads_runs.items())
    return user, system, runs


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
