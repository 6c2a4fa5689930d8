"""benchmarks/harness/report.py, the arithmetic behind the published figures:
ratios to nginx, the verdicts on issue 13's targets, and the estimate at
1 us per system call. Plain rows in, numbers out; nothing is started."""

from __future__ import annotations

import pytest

from tests.unit.bench_modules import benchmark_modules

_memory, _report, _scenarios = benchmark_modules("memory", "report", "scenarios")
MemoryResult = _memory.MemoryResult
Row = _scenarios.Row
cpu_ratios = _report.cpu_ratios
target_checks = _report.target_checks
_at_cheap_syscalls = _report._at_cheap_syscalls


def _row(
    target: str, scenario: str, cpu: float | None, pinning: str = "unpinned", **kw: object
) -> object:
    return Row(target, scenario, "call", pinning=pinning, cpu_us_per_unit=cpu, **kw)


def _verdicts(rows: list[object], memory: list[object] | None = None) -> dict[str, str]:
    return {c["what"]: c["verdict"] for c in target_checks(rows, memory or [])}


def test_a_ratio_is_to_nginx_in_the_same_scenario_and_placement() -> None:
    rows = [
        _row("nginx", "unary-load", 20.0),
        _row("nginx", "unary-load", 40.0, pinning="pinned"),
        _row("nginx", "unary-serial", 60.0),
        _row("grpc-proxy", "unary-load", 10.0),
        _row("grpc-proxy", "unary-load", 10.0, pinning="pinned"),
        _row("grpc-proxy", "unary-serial", 90.0),
    ]
    ratios = cpu_ratios(rows)
    assert ratios[("grpc-proxy", "unary-load", "unpinned")] == pytest.approx(0.5)
    assert ratios[("grpc-proxy", "unary-load", "pinned")] == pytest.approx(0.25)
    assert ratios[("grpc-proxy", "unary-serial", "unpinned")] == pytest.approx(1.5)


def test_no_ratio_without_an_nginx_figure() -> None:
    rows = [_row("nginx", "unary-load", None), _row("grpc-proxy", "unary-load", 10.0)]
    assert cpu_ratios(rows) == {}
    assert _verdicts(rows)["CPU/call vs nginx, unary-load"] == "not measured"


def test_cpu_targets_are_judged_on_the_unpinned_rows_only() -> None:
    rows = [
        _row("nginx", "unary-load", 20.0),
        _row("nginx", "unary-load", 20.0, pinning="pinned"),
        _row("grpc-proxy", "unary-load", 19.0),
        _row("grpc-proxy", "unary-load", 60.0, pinning="pinned"),  # 3x pinned: shown only
        _row("nginx", "unary-1conn", 20.0),
        _row("grpc-proxy", "unary-1conn", 21.0),  # 1.05x against at most 1.0x
        _row("nginx", "unary-serial", 20.0),
        _row("grpc-proxy", "unary-serial", 60.0),  # exactly 3.0x: at most, so met
    ]
    verdicts = _verdicts(rows)
    assert verdicts["CPU/call vs nginx, unary-load"] == "met"
    assert verdicts["CPU/call vs nginx, unary-1conn"] == "missed"
    assert verdicts["CPU/call vs nginx, unary-serial"] == "met"
    assert verdicts["CPU/call vs nginx, bidi-pingpong"] == "not measured"


def test_a_second_worker_is_judged_on_the_best_calls_per_second_of_each() -> None:
    def runs(*rates: float) -> dict[str, object]:
        return {"all_runs": [{"rate": r} for r in rates] + [{"rate": 999999, "error": "x"}]}

    one = _row("grpc-proxy", "unary-load", 20.0, extra=runs(40_000, 41_000))
    more = _row("grpc-proxy-w2", "unary-load", 25.0, extra=runs(30_000, 40_500))
    assert _verdicts([one, more])["worker_processes 2 vs 1, calls/s under load (unary-load)"] == (
        "missed"
    )
    more = _row("grpc-proxy-w2", "unary-load", 25.0, extra=runs(30_000, 41_500))
    assert _verdicts([one, more])["worker_processes 2 vs 1, calls/s under load (unary-load)"] == (
        "met"
    )


def test_a_second_worker_is_judged_with_the_light_backends_when_they_ran() -> None:
    # With the grpc++ backends the load side fills the machine (no gain); with
    # the light ones it leaves a core, and that is the verdict, both shown.
    rows = [
        _row("grpc-proxy", "unary-load", 20.0, rate=41_000.0),
        _row("grpc-proxy-w2", "unary-load", 25.0, rate=40_000.0),
        _row("grpc-proxy", "unary-load-light", 20.0, rate=42_000.0),
        _row("grpc-proxy-w2", "unary-load-light", 25.0, rate=56_700.0),
        _row("grpc-proxy-w2", "unary-load-light", 25.0, rate=90_000.0, pinning="pinned"),
    ]
    checks = {c["what"]: c for c in target_checks(rows, [])}
    light = checks["worker_processes 2 vs 1, calls/s under load (unary-load-light)"]
    assert light["verdict"] == "met"
    assert light["value"] == "1.35x (56,700 vs 42,000 calls/s); unary-load 0.98x"
    # Without the light scenario, unary-load decides.
    checks = {c["what"]: c for c in target_checks(rows[:2], [])}
    assert checks["worker_processes 2 vs 1, calls/s under load (unary-load)"]["verdict"] == (
        "missed"
    )


def test_memory_targets_in_mib_per_1000_streams() -> None:
    mem = MemoryResult(
        "grpc-proxy",
        idle_rss_kib=34 * 1024,
        before_rss_kib=34 * 1024,
        streams_wanted=500,
        streams_open=500,
        open_rss_kib=34 * 1024 + 5 * 1024,  # +5 MiB for 500 streams: +10 MiB per 1000
    )
    verdicts = _verdicts([], [mem])
    assert verdicts["idle RSS"] == "met"
    assert verdicts["RSS per 1000 open streams"] == "missed"  # 10 MiB > 10 MB


def test_the_estimate_at_1_us_per_system_call() -> None:
    row = _row("nginx", "unary-load", 30.0, user_us_per_unit=4.0, syscalls_per_unit=7.5)
    assert _at_cheap_syscalls(row) == pytest.approx(11.5)
    assert _at_cheap_syscalls(_row("nginx", "unary-load", 30.0, user_us_per_unit=4.0)) is None
