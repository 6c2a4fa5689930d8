"""How costly a wake-up is on this machine right now, and how busy it is.

A socketpair ping-pong between two processes (1 byte each way), both on one CPU
and on two different CPUs: the CPU time each side spends per round trip. On this
kind of VM a wake-up of a task on another, idle vCPU costs several times a
same-CPU one; proxies pay it on every call whose peers run on the other CPU, so
the two figures bound how much CPU placement can move CPU per call. Measured at
the start and at the end of a run, next to the load average, so that runs made at
different times (or on a quiet and a busy machine) can be compared.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

ROUND_TRIPS = 3000


def _run_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def pingpong_us(cpu_a: int, cpu_b: int, round_trips: int = ROUND_TRIPS) -> float | None:
    """CPU microseconds per round trip and side, the two processes on cpu_a and cpu_b."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child echoes until EOF
        try:
            a.close()
            os.sched_setaffinity(0, {cpu_b})
            while data := b.recv(1):
                b.send(data)
        finally:
            os._exit(0)
    b.close()
    mine = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu_a})
        for _ in range(200):
            a.send(b"x")
            a.recv(1)
        start = _run_ns(os.getpid()) + _run_ns(pid)
        for _ in range(round_trips):
            a.send(b"x")
            a.recv(1)
        used = _run_ns(os.getpid()) + _run_ns(pid) - start
    except OSError:
        return None
    finally:
        a.close()
        os.waitpid(pid, 0)
        os.sched_setaffinity(0, mine)
    return used / 2 / round_trips / 1e3


def machine_probe() -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    out: dict[str, Any] = {"time": time.strftime("%H:%M:%S"), "loadavg": " ".join(loadavg)}
    if cpus:
        out["same_cpu_us"] = pingpong_us(cpus[0], cpus[0])
    if len(cpus) > 1:
        out["cross_cpu_us"] = pingpong_us(cpus[0], cpus[1])
    return out


def describe(probe: dict[str, Any]) -> str:
    def us(key: str) -> str:
        value = probe.get(key)
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{probe['time']} load average {probe['loadavg']}, ping-pong CPU per round "
        f"trip and side {us('same_cpu_us')} us same CPU, {us('cross_cpu_us')} us "
        "across CPUs"
    )
