"""Markdown tables, the target check and the JSON document."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from harness.loads import LIGHT_SCENARIO
from harness.memory import MemoryResult
from harness.scenarios import SCENARIOS, Row
from harness.targets import FLOORS, GRPC_PROXY, GRPC_PROXY_MYPYC, GRPC_PROXY_W2, NGINX, PROXIES

MIB = 1024.0
# scenario -> highest acceptable grpc-proxy CPU/call as a multiple of nginx's, in the
# unpinned runs (the pinned ones are shown next to them, without a verdict).
CPU_RATIO_TARGETS = {
    "unary-load": 1.0,
    "unary-1conn": 1.0,
    "unary-serial": 3.0,
    "bidi-pingpong": 3.0,
    "server-stream": 2.0,
}
TARGET_PINNING = "unpinned"
# The targets are in MB (10^6 bytes); tables show MiB.
IDLE_RSS_TARGET_MIB = 50e6 / 2**20
STREAMS_RSS_TARGET_MIB = 10e6 / 2**20  # per 1000 open streams
# Rows taken while other programs used this much CPU (% of one core) get a note.
BUSY_WARNING_PCT = 15.0
PINNING_ORDER = {"unpinned": 0, "pinned": 1}


def fmt_num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


Key = tuple[str, str, str]  # target, scenario, pinning


def cpu_ratios(rows: Sequence[Row]) -> dict[Key, float]:
    """(target, scenario, pinning) -> CPU per call over nginx's in the same scenario
    and pinning mode."""
    nginx = {(r.scenario, r.pinning): r.cpu_us_per_unit for r in rows if r.target == NGINX}
    out = {}
    for r in rows:
        base = nginx.get((r.scenario, r.pinning))
        if r.cpu_us_per_unit is not None and base:
            out[(r.target, r.scenario, r.pinning)] = r.cpu_us_per_unit / base
    return out


def ordered(rows: Sequence[Row]) -> list[Row]:
    """Rows grouped by pinning mode (unpinned first), then scenario, then target."""
    scen = {s.key: i for i, s in enumerate(SCENARIOS)}
    return sorted(rows, key=lambda r: (PINNING_ORDER.get(r.pinning, 9), scen.get(r.scenario, 99)))


def _table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def _load_side(r: Row) -> float | None:
    """CPU % of the backends plus the load generator (on the load CPU when pinned)."""
    if r.backend_cpu_pct is None or r.generator_cpu_pct is None:
        return None
    return r.backend_cpu_pct + r.generator_cpu_pct


def _notes(r: Row) -> str:
    notes = [(r.error or "").replace("|", "/").replace("\n", " ")[:160]]
    if r.errors and not r.error:
        notes.append(f"{r.errors} failed")
    if r.note:
        notes.append(r.note)
    if r.other_cpu_pct is not None and r.other_cpu_pct >= BUSY_WARNING_PCT:
        notes.append(f"other CPU use {r.other_cpu_pct:.0f} %")
    runs = int(str(r.extra.get("runs", 1)))
    if runs > 1:
        worst = r.extra.get("cpu_us_per_unit_max")
        spread = (
            ""
            if worst is None or r.cpu_us_per_unit is None
            else f" (CPU/call up to {float(str(worst)):.1f})"
        )
        notes.append(f"best of {runs} runs{spread}")
    return "; ".join(n for n in notes if n)


def load_table(rows: Sequence[Row]) -> list[str]:
    titles = {s.key: f"{s.title} ({s.unit}s/s)" for s in SCENARIOS}
    ratios = cpu_ratios(rows)
    header = [
        "proxy",
        "pinning",
        "scenario",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "CPU us/call",
        "CPU ratio vs nginx",
        "proxy CPU %",
        "load-side CPU %",
        "notes",
    ]
    lines = []
    for r in ordered(rows):
        ratio = ratios.get((r.target, r.scenario, r.pinning))
        lines.append(
            [
                r.target,
                r.pinning,
                titles.get(r.scenario, r.scenario),
                fmt_num(r.rate, 0),
                fmt_num(r.p50_ms, 3),
                fmt_num(r.p99_ms, 3),
                fmt_num(r.cpu_us_per_unit, 1),
                "-" if ratio is None else f"{ratio:.2f}x",
                fmt_num(r.proxy_cpu_pct, 0),
                fmt_num(_load_side(r), 0),
                _notes(r),
            ]
        )
    return _table(header, lines)


def ratio_table(rows: Sequence[Row]) -> list[str]:
    """Per scenario: nginx's CPU/call and each proxy's ratio to it, per pinning mode."""
    ratios = cpu_ratios(rows)
    modes = sorted({r.pinning for r in rows}, key=lambda m: PINNING_ORDER.get(m, 9))
    proxies = {
        m: [
            t
            for t in PROXIES + FLOORS
            if t != NGINX
            and any(
                r.target == t and r.pinning == m and r.cpu_us_per_unit is not None for r in rows
            )
        ]
        for m in modes
    }
    nginx = {(r.scenario, r.pinning): r.cpu_us_per_unit for r in rows if r.target == NGINX}
    header = ["scenario"]
    for m in modes:
        header += [f"nginx us ({m})"] + [f"{p} ({m})" for p in proxies[m]]
    lines = []
    for sc in SCENARIOS:
        if not any(r.scenario == sc.key for r in rows):
            continue
        line = [f"{sc.title} (per {sc.unit})"]
        for m in modes:
            line.append(fmt_num(nginx.get((sc.key, m)), 1))
            for p in proxies[m]:
                ratio = ratios.get((p, sc.key, m))
                line.append("" if ratio is None else f"{ratio:.2f}x")
        lines.append(line)
    return _table(header, lines)


def cpu_split_table(rows: Sequence[Row]) -> list[str]:
    """Per scenario, pinning mode and proxy: where the CPU per call goes (user and
    system time, times put on a CPU, and system calls when counted)."""
    counted = any(r.syscalls_per_unit is not None for r in rows)
    header = [
        "scenario",
        "pinning",
        "proxy",
        "CPU us",
        "user us",
        "system us",
        "system share",
        "times on CPU",
    ]
    if counted:
        header += [
            "syscalls",
            "system us per syscall",
            f"at {CHEAP_SYSCALL_US:g} us per syscall",
            "ratio vs nginx at that",
        ]
    titles = {s.key: s.title for s in SCENARIOS}
    units = {s.key: s.unit for s in SCENARIOS}
    cheap = {(r.target, r.scenario, r.pinning): _at_cheap_syscalls(r) for r in rows}
    lines = []
    for r in ordered(rows):
        if r.cpu_us_per_unit is None or r.user_us_per_unit is None:
            continue
        system = r.system_us_per_unit
        total = (r.user_us_per_unit or 0.0) + (system or 0.0)
        line = [
            f"{titles.get(r.scenario, r.scenario)} (per {units.get(r.scenario, 'call')})",
            r.pinning,
            r.target,
            fmt_num(r.cpu_us_per_unit, 1),
            fmt_num(r.user_us_per_unit, 1),
            fmt_num(system, 1),
            "-" if not total or system is None else f"{100.0 * system / total:.0f} %",
            fmt_num(r.runs_per_unit, 2),
        ]
        if counted:
            calls = r.syscalls_per_unit
            estimate = cheap[r.target, r.scenario, r.pinning]
            nginx = cheap.get((NGINX, r.scenario, r.pinning))
            line += [
                fmt_num(calls, 1),
                "-" if not calls or system is None else f"{system / calls:.2f}",
                fmt_num(estimate, 1),
                "-" if estimate is None or not nginx else f"{estimate / nginx:.2f}x",
            ]
        lines.append(line)
    return _table(header, lines)


# What a system call with its loopback work costs on a machine where they are
# cheap (about what the independent nginx figures of issue 13 imply; 3-5 us
# on the VM these benchmarks were written on).
CHEAP_SYSCALL_US = 1.0


def _at_cheap_syscalls(r: Row) -> float | None:
    """An estimate of the CPU per call where a system call costs
    CHEAP_SYSCALL_US: the user time plus that much per counted system call."""
    if r.user_us_per_unit is None or r.syscalls_per_unit is None:
        return None
    return r.user_us_per_unit + r.syscalls_per_unit * CHEAP_SYSCALL_US


def fmt_mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / MIB:.1f}"


def memory_table(results: Sequence[MemoryResult]) -> list[str]:
    header = [
        "proxy",
        "idle RSS MiB",
        "idle PSS MiB",
        "RSS before MiB",
        "streams open",
        "RSS with streams MiB",
        "PSS with streams MiB",
        "RSS delta MiB",
        "notes",
    ]
    lines = [
        [
            m.target,
            fmt_mib(m.idle_rss_kib),
            fmt_mib(m.idle_pss_kib),
            fmt_mib(m.before_rss_kib),
            f"{m.streams_open}/{m.streams_wanted}",
            fmt_mib(m.open_rss_kib),
            fmt_mib(m.open_pss_kib),
            fmt_mib(m.delta_rss_kib),
            (m.error or "").replace("|", "/").replace("\n", " ")[:160],
        ]
        for m in results
    ]
    return _table(header, lines)


def _verdict(value: float | None, limit: float, below: bool = True) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= limit if below else value > limit) else "missed"


def best_rate(r: Row) -> float | None:
    """The highest calls/s of a row's runs (the least disturbed for throughput)."""
    runs = r.extra.get("all_runs")
    if isinstance(runs, list):
        rates = [float(x["rate"]) for x in runs if x.get("rate") and not x.get("error")]
        return max(rates) if rates else None
    return None if r.error else r.rate


def _memory_figures(memory: Sequence[MemoryResult], target: str) -> tuple[float | None, ...]:
    """target's idle RSS and RSS per 1000 open streams, in MiB."""
    mem = next((m for m in memory if m.target == target), None)
    idle = None if mem is None or mem.idle_rss_kib is None else mem.idle_rss_kib / MIB
    per_1000 = None
    if mem is not None and mem.delta_rss_kib is not None and mem.streams_open:
        per_1000 = mem.delta_rss_kib / MIB * 1000.0 / mem.streams_open
    return idle, per_1000


def _worker_gain(rows: Sequence[Row], scenario: str) -> tuple[float, float, float] | None:
    """(w2 / w1, w2 calls/s, w1 calls/s) in ``scenario``, unpinned, best runs."""
    rates = {
        r.target: best_rate(r)
        for r in rows
        if r.scenario == scenario and r.pinning == TARGET_PINNING
    }
    one, two = rates.get(GRPC_PROXY), rates.get(GRPC_PROXY_W2)
    return (two / one, two, one) if one and two else None


def _second_worker(rows: Sequence[Row]) -> dict[str, Any]:
    """worker_processes 2 against 1: judged with the light backends (unary-load-light),
    where the load side leaves a core for the second worker; with the grpc++ backends
    (unary-load) when that scenario did not run, and shown for information."""
    light, grpc = _worker_gain(rows, LIGHT_SCENARIO), _worker_gain(rows, "unary-load")
    judged, scenario = (light, LIGHT_SCENARIO) if light is not None else (grpc, "unary-load")
    value = None
    if judged is not None:
        gain, two, one = judged
        value = f"{gain:.2f}x ({two:,.0f} vs {one:,.0f} calls/s)"
        if light is not None and grpc is not None:
            value += f"; unary-load {grpc[0]:.2f}x"
    return {
        "what": f"worker_processes 2 vs 1, calls/s under load ({scenario})",
        "limit": "> 1.0x",
        "value": value,
        "compiled": None,
        "pinned": None,
        "verdict": _verdict(None if judged is None else judged[0], 1.0, below=False),
    }


def target_checks(rows: Sequence[Row], memory: Sequence[MemoryResult]) -> list[dict[str, Any]]:
    """grpc-proxy (the pure, default build) against the README's targets (CPU ratios:
    the unpinned runs; the pinned ratio, and the compiled build's figure, are shown
    for information)."""
    ratios = cpu_ratios(rows)
    checks: list[dict[str, Any]] = []
    for scenario, limit in CPU_RATIO_TARGETS.items():
        value = ratios.get((GRPC_PROXY, scenario, TARGET_PINNING))
        pinned = ratios.get((GRPC_PROXY, scenario, "pinned"))
        compiled = ratios.get((GRPC_PROXY_MYPYC, scenario, TARGET_PINNING))
        checks.append(
            {
                "what": f"CPU/call vs nginx, {scenario}",
                "limit": f"<= {limit:.1f}x",
                "value": None if value is None else f"{value:.2f}x",
                "compiled": None if compiled is None else f"{compiled:.2f}x",
                "pinned": None if pinned is None else f"{pinned:.2f}x",
                "verdict": _verdict(value, limit),
            }
        )
    checks.append(_second_worker(rows))
    idle, per_1000 = _memory_figures(memory, GRPC_PROXY)
    c_idle, c_per_1000 = _memory_figures(memory, GRPC_PROXY_MYPYC)
    checks.append(
        {
            "what": "idle RSS",
            "limit": f"< 50 MB ({IDLE_RSS_TARGET_MIB:.1f} MiB)",
            "value": None if idle is None else f"{idle:.1f} MiB",
            "compiled": None if c_idle is None else f"{c_idle:.1f} MiB",
            "pinned": None,
            "verdict": _verdict(idle, IDLE_RSS_TARGET_MIB),
        }
    )
    checks.append(
        {
            "what": "RSS per 1000 open streams",
            "limit": f"< 10 MB ({STREAMS_RSS_TARGET_MIB:.1f} MiB)",
            "value": None if per_1000 is None else f"+{per_1000:.1f} MiB",
            "compiled": None if c_per_1000 is None else f"+{c_per_1000:.1f} MiB",
            "pinned": None,
            "verdict": _verdict(per_1000, STREAMS_RSS_TARGET_MIB),
        }
    )
    return checks


def markdown(
    meta: dict[str, Any],
    rows: Sequence[Row],
    memory: Sequence[MemoryResult],
    checks: Sequence[dict[str, Any]],
) -> str:
    out = [
        f"# Benchmark results ({meta['date']})",
        "",
        f"- machine: {meta['cpu']} x {meta['cpus']}; {meta['pinning']}",
        f"- versions: {meta['versions']}",
        f"- {meta['seconds']:g} s per run after a {meta['warmup']:g} s warm-up, "
        f"{meta['repeat']} round(s); "
        f"{meta['backends']} single-threaded C++ echo backends",
        "",
    ]
    if meta.get("machine"):
        out.insert(-1, f"- machine load: {meta['machine']}")
    out += ["## Proxy CPU per call, as a ratio to nginx's", ""] + ratio_table(rows)
    out += [
        "",
        "Each proxy's CPU per call (message) over nginx's in the same scenario and "
        "pinning mode; unpinned: no process is pinned; pinned: the proxy alone on "
        f"CPU(s) {meta.get('proxy_cpus')}, backends and load generators on "
        f"{meta.get('load_cpus')}.",
        "",
    ]
    out += ["## Throughput, latency, proxy CPU", ""] + load_table(rows)
    out += [
        "",
        "CPU us/call: user+system CPU of all the proxy's processes during the run, "
        "divided by the calls (messages for stream scenarios) completed. proxy CPU % is "
        "the same CPU over wall time (100 % = one core). load-side CPU %: the echo "
        "backends plus the load generator; near 100 % x the load CPUs means the load "
        "side, not the proxy, limited calls/s.",
        "",
    ]
    out += ["## Where the proxy CPU goes", ""] + cpu_split_table(rows)
    out += [
        "",
        "Per call (message): the CPU us/call above split into user and system time "
        "(/proc/PID/stat, whose clock-tick split the kernel scales to the scheduler's "
        "run time), and the times the proxy's threads were put on a CPU (schedstat: "
        "one per wake-up from a sleep, plus preemptions). System time includes, on "
        "loopback, the receiving side's TCP processing done in the sender's system "
        "call. syscalls: counted by `perf stat` in a separate run of the same length "
        "(`--syscalls`), so that counting does not slow the measured run. "
        f"at {CHEAP_SYSCALL_US:g} us per syscall: an estimate, user us + syscalls x "
        f"{CHEAP_SYSCALL_US:g} us, of the CPU per call on a machine where a system call "
        "with its loopback work costs that much (nginx's total moves with it: it writes "
        "each frame with its own system call).",
        "",
    ]
    if memory:
        out += ["## Memory", ""] + memory_table(memory) + [""]
    out += ["## grpc-proxy targets", ""]
    out += _table(
        [
            "target",
            "limit",
            f"measured ({TARGET_PINNING})",
            f"{GRPC_PROXY_MYPYC} ({TARGET_PINNING})",
            "verdict",
            "pinned (for information)",
        ],
        [
            [
                c["what"],
                c["limit"],
                c["value"] or "-",
                c.get("compiled") or "-",
                c["verdict"],
                c.get("pinned") or "-",
            ]
            for c in checks
        ],
    )
    out += [
        "",
        f"Verdicts on grpc-proxy, the pure-Python default build; the {GRPC_PROXY_MYPYC} "
        "column (the HTTP/2 core and the relay compiled with mypyc) is for information.",
    ]
    return "\n".join(out) + "\n"


def document(
    meta: dict[str, Any],
    rows: Sequence[Row],
    memory: Sequence[MemoryResult],
    checks: Sequence[dict[str, Any]],
    targets: dict[str, Any],
) -> dict[str, Any]:
    ratios = cpu_ratios(rows)
    row_dicts = []
    for r in ordered(rows):
        d = asdict(r)
        d["cpu_ratio_vs_nginx"] = ratios.get((r.target, r.scenario, r.pinning))
        row_dicts.append(d)
    mem_dicts = [asdict(m) | {"delta_rss_kib": m.delta_rss_kib} for m in memory]
    return {
        "meta": meta,
        "targets": targets,
        "scenarios": [
            {"key": s.key, "title": s.title, "unit": s.unit, "description": s.description}
            for s in SCENARIOS
        ],
        "rows": row_dicts,
        "memory": mem_dicts,
        "checks": list(checks),
    }
