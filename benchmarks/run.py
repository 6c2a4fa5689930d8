"""Side-by-side benchmark of grpc-proxy, nginx and Envoy (and a direct, proxy-less baseline).

    .venv/bin/python benchmarks/run.py [--quick] [--profile] [...]

Builds the C++ echo backend and stream client (benchmarks/build/) and a compiled
(mypyc) copy of grpc-proxy (benchmarks/build/mypyc/), starts the backends, nginx,
Envoy, grpc-proxy and its compiled build (one worker each, all against the same
backends; plus grpc-proxy with 2 workers for one scenario), then runs, for each
round, each scenario in each pinning mode against each target in turn (direct,
nginx, Envoy, grpc-proxy, grpc-proxy-mypyc), so that the proxies' runs are
interleaved. Prints markdown tables and writes benchmarks/results/latest.md and
latest.json. Installs nothing: when a tool is missing it prints the command that
installs it (benchmarks/setup.sh installs everything).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from harness import loads, probe, procs, profiling, report, syscalls, targets
from harness.loads import LIGHT_SCENARIO
from harness.memory import MemoryResult, hold_streams
from harness.scenarios import (
    SCENARIO_KEYS,
    SCENARIOS,
    UNARY_PAYLOAD,
    BenchEnv,
    Row,
    best_row,
    measure,
)
from harness.targets import (
    DIRECT,
    ENVOY,
    GRPC_PROXY,
    GRPC_PROXY_MYPYC,
    GRPC_PROXY_W2,
    NGINX,
    TRIO_PIPE,
    TRIO_PIPE_WT,
    LaunchContext,
    Target,
)
from harness.tools import (
    BENCH_DIR,
    BUILD_DIR,
    MYPYC_DIR,
    REPO_DIR,
    Tools,
    build_mypyc,
    find_tools,
    version,
)

RESULTS_DIR = BENCH_DIR / "results"
PROXIES = list(targets.PROXIES)
# Run only when --proxies names them (harness/targets.py: TRIO_PIPE).
FLOORS = list(targets.FLOORS)
# Their failures are reported in their rows; the exit status stays 0.
FAILURES_IN_ROWS = (GRPC_PROXY, GRPC_PROXY_MYPYC, GRPC_PROXY_W2, *FLOORS)
PINNING_MODES = ["unpinned", "pinned"]
HOLD_CHANNELS = 4


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="short runs (1.25 s each after a 0.3 s warm-up)"
    )
    p.add_argument("--seconds", type=float, help="measured seconds per run (default 8)")
    p.add_argument("--warmup", type=float, help="warm-up seconds before each run (default 1)")
    p.add_argument(
        "--pinning",
        choices=["both", *PINNING_MODES],
        default="both",
        help="unpinned: no process pinned; pinned: the proxy alone on "
        "--proxy-cpus, everything else on --load-cpus; both (default): "
        "every scenario in both modes, one after the other",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIO_KEYS),
        help=f"comma-separated subset of: {', '.join(SCENARIO_KEYS)}",
    )
    p.add_argument(
        "--proxies",
        default=",".join(PROXIES),
        help=f"comma-separated subset of: {', '.join(PROXIES + FLOORS)} (default: all but "
        "the trio-pipe floors: byte pipes with grpc-proxy's I/O structure and no HTTP/2, "
        "benchmarks/trio_pipe.py)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of all runs (each round: every scenario, pinning mode and "
        "target in turn); each row is then the run with the least CPU/call",
    )
    p.add_argument("--no-direct", action="store_true", help="skip the proxy-less baseline")
    p.add_argument(
        "--streams",
        type=int,
        default=1000,
        help="long-lived streams held open for the memory test (0: skip it)",
    )
    p.add_argument("--backends", type=int, default=2, help="echo backend processes")
    p.add_argument("--proxy-cpus", default="1", help="taskset CPU list for the proxies")
    p.add_argument(
        "--load-cpus", default="0", help="taskset CPU list for the backends and the load generators"
    )
    p.add_argument("--no-pin", action="store_true", help="the same as --pinning unpinned")
    p.add_argument(
        "--grpc-proxy-cmd",
        metavar="CMD",
        help="command that runs grpc-proxy (and grpc-proxy-w2; not "
        "grpc-proxy-mypyc, which runs the compiled build), {config} is replaced by "
        "the config file (default: .venv/bin/python -m proxy -c {config}, in the repo)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead of the comparison: profile grpc-proxy with py-spy during "
        "the unary-load scenario, into benchmarks/results/",
    )
    p.add_argument(
        "--syscalls",
        action="store_true",
        help="after each measured proxy run, one more run of the same length with "
        "`perf stat` counting the proxy's system calls (reported per call; needs "
        "perf and root); the CPU figures come from the uncounted runs",
    )
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    args.seconds = args.seconds or (1.25 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    args.scenarios = _subset(p, args.scenarios, SCENARIO_KEYS)
    args.proxies = _subset(p, args.proxies, PROXIES + FLOORS)
    if args.no_pin or len(os.sched_getaffinity(0)) < 2:
        args.pinning = "unpinned"
    args.pinning_modes = PINNING_MODES if args.pinning == "both" else [args.pinning]
    return args


def _subset(p: argparse.ArgumentParser, text: str, allowed: list[str]) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in allowed]
    if unknown:
        p.error(f"unknown {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return [s for s in allowed if s in chosen]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------
# Setting up


class Lab:
    """The processes of one run; stop() ends every one of them."""

    def __init__(self, tools: Tools, args: argparse.Namespace, workdir: Path) -> None:
        self.tools, self.args, self.workdir = tools, args, workdir
        self.backends: list[procs.Proc] = []  # grpc++ and light: the load side's CPU
        self.light_ports: list[int] = []
        self.targets: list[Target] = []
        self.all_cpus = os.sched_getaffinity(0)

    def start_backends(self) -> list[int]:
        """The grpc++ echo backends; with unary-load-light, as many light ones
        (h2_echo) besides, in ``light_ports``."""
        ports = procs.free_ports(self.args.backends)
        for i, port in enumerate(ports):
            self._start_backend(f"backend{i}", [str(self.tools.echo_server), str(port), "1"], port)
        if LIGHT_SCENARIO in self.args.scenarios and not self.args.profile:
            self.light_ports = procs.free_ports(self.args.backends)
            for i, port in enumerate(self.light_ports):
                self._start_backend(f"light{i}", [str(self.tools.h2_echo), str(port)], port)
        return ports

    def _start_backend(self, name: str, cmd: list[str], port: int) -> None:
        proc = procs.start(name, cmd, self.workdir)
        self.backends.append(proc)
        if not procs.wait_port(port, 10.0, proc):
            raise RuntimeError(f"{name} on {port} did not start: {proc.log_tail()}")

    def launch(self, names: Sequence[str], backend_ports: list[int]) -> None:
        # Started unpinned; place() moves them for each pinning mode.
        ctx = LaunchContext(
            self.workdir, backend_ports, None, self.tools.stream_client, None, self.light_ports
        )
        for name in names:
            log(f"starting {name} ...")
            # Ports already taken by running proxies are not handed out again.
            port, admin_port = procs.free_ports(2)
            if name == NGINX:
                target = targets.launch_nginx(ctx, self.tools.nginx, port)
            elif name == ENVOY:
                target = targets.launch_envoy(ctx, self.tools.envoy, port, admin_port)
            elif name == GRPC_PROXY_W2:
                target = targets.launch_grpc_proxy(ctx, port, self.args.grpc_proxy_cmd, 2)
            elif name == GRPC_PROXY_MYPYC:
                target = targets.launch_grpc_proxy_mypyc(ctx, port, self.build_mypyc())
            elif name in (TRIO_PIPE, TRIO_PIPE_WT):
                target = targets.launch_trio_pipe(ctx, port, name == TRIO_PIPE_WT)
            else:
                target = targets.launch_grpc_proxy(ctx, port, self.args.grpc_proxy_cmd)
            targets.settle_and_measure_idle(target)
            status = target.error or f"serving on 127.0.0.1:{target.port}"
            if target.info.get("package"):
                status += f" (package {target.info['package']})"
            log(f"  {name}: {status}")
            if target.info.get("version") and not target.error:
                log(f"  {name}: {target.info['version']}")
            self.targets.append(target)

    def build_mypyc(self) -> str | None:
        """The compiled copy of the checkout, rebuilt when its sources changed; the
        error if the build failed."""
        log(f"  compiled build (mypyc) of the checkout in {MYPYC_DIR} ...")
        started = time.monotonic()
        rebuilt, error = build_mypyc(targets.grpc_proxy_python())
        if error is None:
            log(
                f"  built in {time.monotonic() - started:.0f} s"
                if rebuilt
                else "  up to date (same sources): not rebuilt"
            )
        return error

    def env(self, pinning: str) -> BenchEnv:
        """The environment of the runs in one pinning mode, after placing the processes."""
        self.place(pinning)
        body = self.workdir / "unary-body.bin"
        if not body.exists():
            body.write_bytes(loads.grpc_unary_body(UNARY_PAYLOAD))
        load_cpus = self.args.load_cpus if pinning == "pinned" else None
        return BenchEnv(
            self.tools,
            self.workdir,
            body,
            load_cpus,
            self.backends,
            pinning,
            count_syscalls=self.args.syscalls,
        )

    def place(self, pinning: str) -> None:
        """Pin (or unpin) every thread of the running proxies and backends; the load
        generators are started with taskset for each run."""
        if pinning == "pinned":
            proxy_cpus = procs.parse_cpus(self.args.proxy_cpus)
            load_cpus = procs.parse_cpus(self.args.load_cpus)
        else:
            proxy_cpus = load_cpus = self.all_cpus
        for target in self.targets:
            procs.set_affinity(target.pids(), proxy_cpus)
        procs.set_affinity([pid for b in self.backends for pid in b.tree()], load_cpus)

    def stop(self) -> None:
        for target in reversed(self.targets):
            if target.proc is not None:
                procs.stop(target.proc)
        for backend in reversed(self.backends):
            procs.stop(backend)


# ---------------------------------------------------------------------------
# Running


def run_memory(lab: Lab, env: BenchEnv) -> list[MemoryResult]:
    results = []
    for target in lab.targets:
        if target.only_scenarios is not None:
            continue  # the 2-worker grpc-proxy: one load scenario only
        log(f"[memory] {target.name}: holding {lab.args.streams} streams open ...")
        m = hold_streams(
            target, lab.tools.stream_client, lab.args.streams, HOLD_CHANNELS, env.load_cpus
        )
        log(
            f"  {m.streams_open} open; RSS {report.fmt_mib(m.idle_rss_kib)} MiB idle, "
            f"{report.fmt_mib(m.open_rss_kib)} MiB with streams {m.error or ''}"
        )
        results.append(m)
    return results


def run_loads(lab: Lab, order: list[Target]) -> list[Row]:
    """--repeat rounds; each round runs every scenario, in every pinning mode, against
    every target in turn (direct, nginx, Envoy, the grpc-proxies), so that the runs of the
    proxies compared in one row of the ratio table are minutes apart at most."""
    scenarios = [s for s in SCENARIOS if s.key in lab.args.scenarios]
    runs: dict[tuple[str, str, str], list[Row]] = {}
    for round_no in range(1, lab.args.repeat + 1):
        prefix = f"round {round_no}/{lab.args.repeat} " if lab.args.repeat > 1 else ""
        for scenario in scenarios:
            for pinning in lab.args.pinning_modes:
                env = lab.env(pinning)
                for target in order:
                    if not target.runs(scenario.key, pinning):
                        continue
                    log(f"{prefix}[{scenario.key}, {pinning}] {target.name} ...")
                    row = measure(target, scenario, env, lab.args.seconds, lab.args.warmup)
                    log(
                        f"  {report.fmt_num(row.rate, 0)} {scenario.unit}s/s, p50 "
                        f"{report.fmt_num(row.p50_ms, 3)} ms, p99 "
                        f"{report.fmt_num(row.p99_ms, 3)} ms, CPU "
                        f"{report.fmt_num(row.cpu_us_per_unit)} us/{scenario.unit}, other "
                        f"CPU {report.fmt_num(row.other_cpu_pct, 0)} %"
                        + (
                            f", {row.syscalls_per_unit:.1f} syscalls/{scenario.unit}"
                            if row.syscalls_per_unit is not None
                            else ""
                        )
                        + f" {row.error or ''}"
                    )
                    runs.setdefault((scenario.key, pinning, target.name), []).append(row)
    return [best_row(rows) for rows in runs.values()]


def metadata(args: argparse.Namespace, tools: Tools) -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    pinning = " and ".join(
        "unpinned (no process pinned)"
        if mode == "unpinned"
        else f"pinned (proxy on CPU {args.proxy_cpus}, backends and load generators on CPU "
        f"{args.load_cpus})"
        for mode in args.pinning_modes
    )
    grpc_version = subprocess.run(
        ["pkg-config", "--modversion", "grpc++"], capture_output=True, text=True, check=False
    ).stdout.strip()
    versions = {
        "nginx": version([tools.nginx, "-v"]),
        "envoy": version([tools.envoy, "--version"]).split("version:")[-1].strip(),
        "h2load": version([tools.h2load, "--version"]),
        "grpc++": grpc_version,
        "python": platform.python_version(),
    }
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "pinning": pinning,
        "pinning_modes": args.pinning_modes,
        "proxy_cpus": args.proxy_cpus,
        "load_cpus": args.load_cpus,
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "backends": args.backends,
        "repeat": args.repeat,
        "quick": args.quick,
        "git": _git_head(),
    }


def _git_head() -> str | None:
    out = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None


def machine_load(probes: list[dict[str, Any]], rows: list[Row]) -> str:
    """How busy the machine was: the probes at start and end, and the CPU other
    programs used during the runs."""
    other = sorted(r.other_cpu_pct for r in rows if r.other_cpu_pct is not None)
    text = "; ".join(
        f"{'start' if i == 0 else 'end'} {probe.describe(p)}" for i, p in enumerate(probes)
    )
    if other:
        text += (
            f"; CPU used by other programs during the runs: median "
            f"{other[len(other) // 2]:.0f} %, max {other[-1]:.0f} % of one core"
        )
    return text


def write_results(
    args: argparse.Namespace,
    tools: Tools,
    lab: Lab,
    rows: list[Row],
    memory: list[MemoryResult],
    probes: list[dict[str, Any]],
) -> str:
    meta = metadata(args, tools)
    meta["machine"] = machine_load(probes, rows)
    meta["probes"] = probes
    checks = report.target_checks(rows, memory)
    text = report.markdown(meta, rows, memory, checks)
    target_info = {t.name: {"port": t.port, "error": t.error, **t.info} for t in lab.targets}
    doc = report.document(meta, rows, memory, checks, target_info)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "latest.md").write_text(text)
    (args.results_dir / "latest.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return text


def run_profile(lab: Lab, env: BenchEnv) -> int:
    target = lab.targets[0]
    if not target.usable:
        log(f"grpc-proxy is not runnable: {target.error}")
        return 1
    if lab.tools.py_spy is None:
        log(f"py-spy is missing: {sys.executable} -m pip install py-spy")
        return 2
    # unary-load, unless --scenarios names others: then the first of those.
    keys = lab.args.scenarios
    key = "unary-load" if "unary-load" in keys or len(keys) == len(SCENARIOS) else keys[0]
    scenario = next(s for s in SCENARIOS if s.key == key)
    lab.args.results_dir.mkdir(parents=True, exist_ok=True)
    seconds = max(lab.args.seconds, 5.0)
    log(f"profiling grpc-proxy under {scenario.key} for {seconds:g} s (twice) ...")
    errors = profiling.profile(
        lab.tools.py_spy, target, env, scenario, seconds, lab.args.results_dir
    )
    for error in errors:
        log(f"  {error}")
    top = lab.args.results_dir / f"profile-{scenario.key}-top.txt"
    if top.exists():
        print("\n".join(top.read_text().splitlines()[:30]))
        log(f"wrote {lab.args.results_dir}/profile-{scenario.key}.svg, .txt, -top.txt")
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    found = find_tools(need_py_spy=args.profile)
    if isinstance(found, list):
        log("missing tools; install them with (or run benchmarks/setup.sh):")
        for command in found:
            log(f"  {command}")
        return 2
    if args.syscalls and (why := syscalls.unavailable()):
        log(f"--syscalls: {why}")
        return 2
    workdir = BUILD_DIR / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    lab = Lab(found, args, workdir)
    try:
        backend_ports = lab.start_backends()
        lab.launch([GRPC_PROXY] if args.profile else args.proxies, backend_ports)
        if args.profile:
            return run_profile(lab, lab.env(args.pinning_modes[0]))
        probes = [probe.machine_probe()]
        log(f"machine: {probe.describe(probes[0])}")
        memory = run_memory(lab, lab.env("unpinned")) if args.streams > 0 else []
        direct = []
        if not args.no_direct:  # the grpc++ backend: not in the light scenario
            direct = [Target(DIRECT, backend_ports[0], skips=(LIGHT_SCENARIO,))]
        started = time.monotonic()
        rows = run_loads(lab, direct + lab.targets)
        log(f"load scenarios took {time.monotonic() - started:.0f} s")
        probes.append(probe.machine_probe())
        log(f"machine: {probe.describe(probes[-1])}")
    except (KeyboardInterrupt, SystemExit):
        log("interrupted: stopping the processes started")
        raise
    finally:
        lab.stop()
    print(write_results(args, found, lab, rows, memory, probes))
    log(f"wrote {args.results_dir / 'latest.md'} and latest.json (logs in {workdir})")
    broken = [r for r in rows if r.error and r.target not in FAILURES_IN_ROWS]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
