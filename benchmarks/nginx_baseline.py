"""What moves nginx's CPU per call in this benchmark: one setting changed at a time.

    .venv/bin/python benchmarks/nginx_baseline.py [--seconds 3] [--rounds 3] [--only a,b]

Starts two C++ echo backends and nginx (the config of harness/targets.py, with
one setting changed per variant), runs h2load in three unary scenarios (10
connections x 10 streams, 1 connection x 100 streams, one call at a time) and
prints nginx's CPU per call, read both from /proc/PID/stat (utime+stime, clock
ticks) and from /proc/PID/task/*/schedstat (ns), and the user-time part of it
(the rest is system time: nginx writes each frame with its own system call, so
its total moves with what a system call costs on the machine), for every variant. Variants run
in turn within each round (--rounds N: N rounds), and the table gives the
median over rounds; a socketpair ping-pong probe (harness/probe.py) at the
start and end shows what a same-CPU and a cross-CPU wake-up cost at the time.
Results also go to build/nginx-baseline/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import loads, probe, procs, targets
from harness.tools import BUILD_DIR, find_tools

WORKDIR = BUILD_DIR / "nginx-baseline"
SCENARIOS = {"10x10": (10, 10), "1x100": (1, 100), "serial": (1, 1)}


@dataclass(frozen=True)
class Variant:
    key: str
    what: str
    proxy_cpus: str | None = "1"  # the harness's old default: nginx alone on CPU 1
    load_cpus: str | None = "0"
    window: str = "around"  # around the generator run, or "steady": inside the load
    warmup: float = 1.0
    keepalive: int = 1000
    workers: str = "1"
    backends: int = 2
    backend_threads: int = 1
    extra: dict[str, str] = field(default_factory=dict)


VARIANTS = [
    Variant("old", "old harness: nginx pinned alone on CPU 1, the rest on CPU 0"),
    Variant("unpinned", "no pinning (only change)", None, None),
    Variant("one-cpu", "everything pinned to CPU 0 (no cross-CPU wake-up)", "0", "0"),
    Variant(
        "steady", "pinned; CPU read 1 s into the load, calls counted in the window", window="steady"
    ),
    Variant("no-warmup", "pinned; no warm-up run", warmup=0.0),
    Variant("ka4096", "pinned; upstream keepalive 4096", keepalive=4096),
    Variant("workers-auto", "pinned to CPU 1; worker_processes auto (2)", workers="auto"),
    Variant("backend-1", "pinned; one backend process", backends=1),
    Variant("backend-2t", "pinned; backends with 2 polling threads", backend_threads=2),
    Variant(
        "independent",
        "unpinned, keepalive 4096 (the independent run's settings)",
        None,
        None,
        keepalive=4096,
    ),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def nginx_conf(workdir: Path, port: int, backends: Sequence[int], v: Variant) -> str:
    text = targets.nginx_config(workdir, port, backends)
    text = text.replace("worker_processes 1;", f"worker_processes {v.workers};")
    return text.replace("keepalive 1000;", f"keepalive {v.keepalive};")


def h2load_cmd(
    h2load: str,
    port: int,
    conns: int,
    streams: int,
    seconds: float,
    body: Path,
    log_file: Path | None,
) -> list[str]:
    cmd = [
        h2load,
        "-D",
        f"{round(seconds * 1000)}ms",
        "-c",
        str(conns),
        "-m",
        str(streams),
        "-t",
        "1",
        "--data",
        str(body),
        *loads.GRPC_HEADERS,
    ]
    if log_file is not None:
        cmd += ["--log-file", str(log_file)]
    return [*cmd, f"http://127.0.0.1:{port}{loads.UNARY_PATH}"]


def completed_between(log_file: Path, t0: float, t1: float) -> int:
    """Successful calls of an h2load --log-file that ended between t0 and t1 (epoch s)."""
    count = 0
    for line in log_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "200":
            end = (int(parts[0]) + int(parts[2])) / 1e6
            count += t0 <= end < t1
    return count


def measure(
    h2load: str,
    port: int,
    scenario: str,
    v: Variant,
    seconds: float,
    body: Path,
    nginx_pids: list[int],
    backend_pids: list[int],
) -> dict[str, Any]:
    conns, streams = SCENARIOS[scenario]
    log_file = WORKDIR / "h2load.log"
    if v.warmup > 0:
        subprocess.run(
            procs.pinned(
                h2load_cmd(h2load, port, conns, streams, v.warmup, body, None), v.load_cpus
            ),
            capture_output=True,
            check=False,
        )
    if v.window == "steady":
        # The load runs 2 s longer; CPU is read 1 s after it starts and 1 s before it ends.
        cmd = h2load_cmd(h2load, port, conns, streams, seconds + 2.0, body, log_file)
        gen = subprocess.Popen(
            procs.pinned(cmd, v.load_cpus), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(1.0)
        ours = [*backend_pids, gen.pid]
        busy0, t0 = procs.system_busy_seconds(), time.time()
        before, ours_before = procs.cpu_sample(nginx_pids), procs.cpu_sample(ours)
        time.sleep(seconds)
        busy1, t1 = procs.system_busy_seconds(), time.time()
        after, ours_after = procs.cpu_sample(nginx_pids), procs.cpu_sample(ours)
        gen.wait(timeout=seconds + 60)
        calls = completed_between(log_file, t0, t1)
        ours_s = procs.cpu_used(ours_before, ours_after)
    else:
        cmd = h2load_cmd(h2load, port, conns, streams, seconds, body, None)
        busy0, t0 = procs.system_busy_seconds(), time.time()
        before, ours_before = procs.cpu_sample(nginx_pids), procs.cpu_sample(backend_pids)
        out, gen_s = loads.run_measured(procs.pinned(cmd, v.load_cpus), seconds + 60)
        busy1, t1 = procs.system_busy_seconds(), time.time()
        after, ours_after = procs.cpu_sample(nginx_pids), procs.cpu_sample(backend_pids)
        stats = loads.parse_h2load(out.stdout)
        calls = int(stats.get("succeeded", 0))
        ours_s = procs.cpu_used(ours_before, ours_after) + gen_s
    log_file.unlink(missing_ok=True)
    if not calls:
        return {"error": "no calls"}
    sched = procs.cpu_used(before, after, "schedstat")
    user_s, _, _ = procs.cpu_split(before, after)
    return {
        "calls_per_s": calls / (t1 - t0),
        "schedstat_us": sched / calls * 1e6,
        "stat_us": procs.cpu_used(before, after, "stat") / calls * 1e6,
        "user_us": user_s / calls * 1e6,
        "other_cpu_pct": max(0.0, 100.0 * (busy1 - busy0 - sched - ours_s) / (t1 - t0)),
    }


def run_variant(tools: Any, v: Variant, seconds: float, body: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    backends: list[procs.Proc] = []
    nginx: procs.Proc | None = None
    try:
        ports = procs.free_ports(v.backends)
        for i, port in enumerate(ports):
            proc = procs.start(
                f"backend{i}",
                [str(tools.echo_server), str(port), str(v.backend_threads)],
                WORKDIR,
                cpus=v.load_cpus,
            )
            backends.append(proc)
            if not procs.wait_port(port, 10.0, proc):
                raise RuntimeError(f"backend did not start: {proc.log_tail()}")
        port = procs.free_ports(1)[0]
        conf_dir = WORKDIR / "nginx"
        shutil.rmtree(conf_dir, ignore_errors=True)
        conf_dir.mkdir()
        conf = conf_dir / "nginx.conf"
        conf.write_text(nginx_conf(conf_dir, port, ports, v))
        nginx = procs.start(
            "nginx",
            [tools.nginx, "-p", str(conf_dir), "-c", str(conf), "-g", "daemon off;"],
            WORKDIR,
            cpus=v.proxy_cpus,
        )
        if not procs.wait_port(port, 10.0, nginx):
            raise RuntimeError(f"nginx did not start: {nginx.log_tail()}")
        time.sleep(0.5)
        pids = nginx.tree()
        backend_pids = [pid for b in backends for pid in b.tree()]
        for scenario in SCENARIOS:
            out[scenario] = measure(
                tools.h2load, port, scenario, v, seconds, body, pids, backend_pids
            )
    finally:
        if nginx is not None:
            procs.stop(nginx)
        for b in backends:
            procs.stop(b)
    return out


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default="", help="comma-separated variant keys")
    args = p.parse_args(argv)
    only = {k for k in args.only.split(",") if k}
    variants = [v for v in VARIANTS if not only or v.key in only]
    found = find_tools(need_py_spy=False)
    if isinstance(found, list):
        log("missing tools: " + "; ".join(found))
        return 2
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    body = WORKDIR / "body.bin"
    body.write_bytes(loads.grpc_unary_body(32))
    probes = [probe.machine_probe()]
    log(f"machine: {probe.describe(probes[0])}")
    results: dict[str, list[dict[str, Any]]] = {v.key: [] for v in variants}
    for round_no in range(1, args.rounds + 1):
        for v in variants:
            res = run_variant(found, v, args.seconds, body)
            results[v.key].append(res)
            log(
                f"round {round_no} {v.key}: "
                + ", ".join(
                    f"{s} {r.get('schedstat_us', 0):.1f} us ({r.get('calls_per_s', 0):,.0f}/s)"
                    for s, r in res.items()
                )
            )
    probes.append(probe.machine_probe())
    log(f"machine: {probe.describe(probes[-1])}")
    (WORKDIR / "results.json").write_text(
        json.dumps(
            {
                "probes": probes,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "variants": {v.key: {"what": v.what, "runs": results[v.key]} for v in variants},
            },
            indent=1,
        )
        + "\n"
    )
    header = (
        ["setting"]
        + [f"{s} us/call (schedstat / stat / user)" for s in SCENARIOS]
        + ["other programs' CPU %"]
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for v in variants:
        cells = [f"{v.what} (`{v.key}`)"]
        busy: list[float] = []
        for s in SCENARIOS:
            runs = [r[s] for r in results[v.key] if "schedstat_us" in r.get(s, {})]
            sched = median([r["schedstat_us"] for r in runs])
            stat = median([r["stat_us"] for r in runs])
            user = median([r["user_us"] for r in runs])
            busy += [r["other_cpu_pct"] for r in runs]
            cells.append(
                "-"
                if sched is None or stat is None or user is None
                else f"{sched:.1f} / {stat:.1f} / {user:.1f}"
            )
        cells.append(f"{median(busy):.0f}" if busy else "-")
        print("| " + " | ".join(cells) + " |")
    print(
        f"\nmedians of {args.rounds} round(s) of {args.seconds:g} s runs; "
        + "; ".join(probe.describe(p) for p in probes)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
