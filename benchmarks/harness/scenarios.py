"""The load scenarios, and measuring one scenario against one target."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import loads, procs, syscalls
from harness.targets import Target, check_serving
from harness.tools import Tools

UNARY_PAYLOAD = 32
# Offered load of the paced unary scenario: light load, well below what every proxy
# sustains even on a busy machine, so that all of them do the same work per second
# and CPU per call compares directly (few calls per wake-up, unlike unary-load).
UNARY_FIXED_RATE = 2000
STREAM_MESSAGE_SIZE = 1024
STREAM_MESSAGES = 100  # per call (server-stream) or round trips per call (bidi)
STREAM_CONCURRENCY = 10
STREAM_CHANNELS = 2


@dataclass
class BenchEnv:
    """Everything a scenario needs besides the target."""

    tools: Tools
    workdir: Path
    body_file: Path
    load_cpus: str | None  # taskset list for the load generators; None: unpinned
    backends: list[procs.Proc]
    pinning: str = "unpinned"  # "pinned" or "unpinned": what load_cpus stands for
    # After each measured proxy run, one more run with its system calls counted.
    count_syscalls: bool = False


# A load run: (env, port, seconds, keep per-request latencies) -> result.
LoadFn = Callable[[BenchEnv, int, float, bool], loads.LoadResult]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    unit: str  # what calls/s and CPU/call count: "call" or "msg"
    description: str
    run: LoadFn


def _unary(
    connections: int, streams: int, rate: int | None = None, path: str = loads.UNARY_PATH
) -> LoadFn:
    def run(env: BenchEnv, port: int, seconds: float, keep: bool) -> loads.LoadResult:
        rps = rate // connections if rate else None
        spec = loads.H2loadRun(
            env.tools.h2load,
            port,
            connections,
            streams,
            seconds,
            env.body_file,
            env.load_cpus,
            rps,
            path,
        )
        log = env.workdir / f"h2load-{port}.log" if keep else None
        result = loads.run_h2load(spec, log)
        if rate and result.units and result.rate < 0.95 * rate:
            result.extra["note"] = f"below the offered {rate} calls/s"
        return result

    return run


def _streams(mode: str) -> LoadFn:
    def run(env: BenchEnv, port: int, seconds: float, keep: bool) -> loads.LoadResult:
        spec = loads.StreamRun(
            env.tools.stream_client,
            mode,
            port,
            seconds,
            STREAM_CONCURRENCY,
            STREAM_CHANNELS,
            STREAM_MESSAGES,
            STREAM_MESSAGE_SIZE,
            env.load_cpus,
        )
        return loads.run_stream_client(spec)

    return run


SCENARIOS = [
    Scenario(
        "unary-load",
        "unary, 10 conns x 10 streams",
        "call",
        f"h2load -c 10 -m 10, {UNARY_PAYLOAD}-byte payload: throughput under load; "
        "latency is per call",
        _unary(10, 10),
    ),
    Scenario(
        loads.LIGHT_SCENARIO,
        "unary, 10 x 10, light backends",
        "call",
        f"h2load -c 10 -m 10, {UNARY_PAYLOAD}-byte payload, as unary-load, to two h2_echo "
        "backends (libnghttp2, ~1 us of CPU per call) instead of the grpc++ ones: the load "
        "side leaves the proxy most of the machine, so a second worker has a core to use",
        _unary(10, 10, path=loads.LIGHT_PATH),
    ),
    Scenario(
        "unary-1conn",
        "unary, 1 conn x 100 streams",
        "call",
        f"h2load -c 1 -m 100, {UNARY_PAYLOAD}-byte payload: one client connection "
        "multiplexing 100 calls, as fast as it goes",
        _unary(1, 100),
    ),
    Scenario(
        "unary-fixed-rate",
        f"unary, 10 x 10 paced at {UNARY_FIXED_RATE // 1000}k calls/s",
        "call",
        f"h2load -c 10 -m 10 --rps {UNARY_FIXED_RATE // 10}: the same light offered "
        f"load ({UNARY_FIXED_RATE} calls/s) for every proxy, so CPU per call is compared at "
        "equal work",
        _unary(10, 10, UNARY_FIXED_RATE),
    ),
    Scenario(
        "unary-serial",
        "unary, 1 call at a time",
        "call",
        "h2load -c 1 -m 1: one call in flight; latency is the round trip through the proxy",
        _unary(1, 1),
    ),
    Scenario(
        "server-stream",
        "server-stream 1 KiB msgs",
        "msg",
        f"stream_client: ServerStream calls of {STREAM_MESSAGES} x {STREAM_MESSAGE_SIZE}-byte "
        f"messages, {STREAM_CONCURRENCY} calls at a time on {STREAM_CHANNELS} connections; "
        "rate and CPU are per message, latency is per whole call",
        _streams("server-stream"),
    ),
    Scenario(
        "bidi-pingpong",
        "bidi ping-pong 1 KiB",
        "msg",
        f"stream_client: Bidi calls of {STREAM_MESSAGES} ping-pong round trips of "
        f"{STREAM_MESSAGE_SIZE} bytes, {STREAM_CONCURRENCY} streams at a time on "
        f"{STREAM_CHANNELS} connections; rate and CPU are per round trip, latency is per "
        "round trip",
        _streams("bidi"),
    ),
]
SCENARIO_KEYS = [s.key for s in SCENARIOS]


@dataclass
class Row:
    target: str
    scenario: str
    unit: str
    pinning: str = "unpinned"
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    units: int = 0
    cpu_us_per_unit: float | None = None
    # The same CPU split into user and system (kernel) time, and the times the
    # proxy's threads were put on a CPU (wake-ups plus preemptions), per unit.
    user_us_per_unit: float | None = None
    system_us_per_unit: float | None = None
    runs_per_unit: float | None = None
    # System calls per unit, from a separate run under `perf stat` (--syscalls).
    syscalls_per_unit: float | None = None
    proxy_cpu_pct: float | None = None
    backend_cpu_pct: float | None = None
    generator_cpu_pct: float | None = None
    # Busy CPU on the machine not used by the proxy, backends or load generator,
    # e.g. other programs running at the same time (makes the figures noisy).
    other_cpu_pct: float | None = None
    errors: int = 0
    error: str | None = None
    note: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


Snapshot = tuple[dict[int, procs.CpuSample], dict[int, procs.CpuSample]]


def _snapshot(target: Target, env: BenchEnv) -> Snapshot:
    backend_pids = [pid for b in env.backends for pid in b.tree()]
    return procs.cpu_sample(target.pids()), procs.cpu_sample(backend_pids)


def measure(
    target: Target, scenario: Scenario, env: BenchEnv, seconds: float, warmup: float
) -> Row:
    """One run: check, warm up, then the measured load.

    The proxy's CPU is read (per thread, from schedstat) just before the measured
    load generator starts and just after it exits: the window holds the whole
    measured load and nothing else, as the proxy is idle between runs (connection
    set-up and teardown of the generator are inside it, a few ms in seconds).
    """
    row = Row(target.name, scenario.key, scenario.unit, env.pinning)
    if not target.usable:
        row.error = target.error
        return row
    if error := check_serving(env.tools.stream_client, target.port, env.load_cpus):
        row.error = error
        return row
    if warmup > 0:
        scenario.run(env, target.port, warmup, False)
    proxy_before, backend_before = _snapshot(target, env)
    busy_before, started = procs.system_busy_seconds(), time.monotonic()
    result = scenario.run(env, target.port, seconds, True)
    wall = time.monotonic() - started
    busy = procs.system_busy_seconds() - busy_before
    proxy_after, backend_after = _snapshot(target, env)
    _fill(row, result)
    proxy_cpu = procs.cpu_used(proxy_before, proxy_after)
    backend_cpu = procs.cpu_used(backend_before, backend_after)
    if target.is_proxy and result.units:
        row.cpu_us_per_unit = proxy_cpu / result.units * 1e6
        row.proxy_cpu_pct = 100.0 * proxy_cpu / wall
        user, system, runs = procs.cpu_split(proxy_before, proxy_after)
        row.user_us_per_unit = user / result.units * 1e6
        row.system_us_per_unit = system / result.units * 1e6
        row.runs_per_unit = runs / result.units
    row.backend_cpu_pct = 100.0 * backend_cpu / wall
    row.generator_cpu_pct = 100.0 * result.generator_cpu_s / wall
    ours = proxy_cpu + backend_cpu + result.generator_cpu_s
    row.other_cpu_pct = max(0.0, 100.0 * (busy - ours) / wall)
    if env.count_syscalls and target.is_proxy and row.units and not row.error:
        counted, calls = syscalls.counted(
            target.pids(), lambda: scenario.run(env, target.port, seconds, False)
        )
        if calls is not None and counted.units:
            row.syscalls_per_unit = calls / counted.units
    if not target.usable:
        row.error = row.error or target.error
    return row


def _fill(row: Row, result: loads.LoadResult) -> None:
    row.rate = result.rate if result.units else None
    row.p50_ms, row.p99_ms, row.mean_ms = result.p50_ms, result.p99_ms, result.mean_ms
    row.units, row.errors, row.error = result.units, result.errors, result.error
    row.extra = dict(result.extra)
    row.note = str(row.extra.pop("note")) if "note" in row.extra else None
    if result.max_ms is not None:
        row.extra["max_ms"] = result.max_ms


def best_row(rows: list[Row]) -> Row:
    """Of repeated runs, the one with the least proxy CPU per call (direct: highest rate).

    Other programs on the machine only ever add cost (contention, cache misses, extra
    wake-ups), so the cheapest of N runs is the least disturbed measurement.
    """
    if len(rows) == 1:
        return rows[0]
    good = [r for r in rows if not r.error] or rows
    if any(r.cpu_us_per_unit is not None for r in good):
        chosen = min(good, key=lambda r: r.cpu_us_per_unit or float("inf"))
    else:
        chosen = max(good, key=lambda r: r.rate or 0.0)
    chosen.extra["runs"] = len(rows)
    chosen.extra["all_runs"] = [
        {
            "rate": r.rate,
            "cpu_us_per_unit": r.cpu_us_per_unit,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "other_cpu_pct": r.other_cpu_pct,
            "error": r.error,
        }
        for r in rows
    ]
    cpus = sorted(r.cpu_us_per_unit for r in good if r.cpu_us_per_unit is not None)
    if cpus:
        chosen.extra["cpu_us_per_unit_median"] = cpus[len(cpus) // 2]
        chosen.extra["cpu_us_per_unit_max"] = cpus[-1]
    if len(good) < len(rows):
        failed = f"{len(rows) - len(good)} of {len(rows)} runs failed"
        chosen.note = f"{chosen.note}; {failed}" if chosen.note else failed
    return chosen
