"""py-spy profiles of grpc-proxy while it serves the under-load unary scenario."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

from harness.scenarios import BenchEnv, Scenario
from harness.targets import Target

TOP_N = 40


def _record(py_spy: str, pid: int, seconds: float, fmt: str, out: Path) -> subprocess.Popen[str]:
    cmd = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--rate",
        "200",
        "--duration",
        f"{max(1, round(seconds))}",
        "--format",
        fmt,
        "--output",
        str(out),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _profile_once(
    py_spy: str,
    target: Target,
    env: BenchEnv,
    scenario: Scenario,
    seconds: float,
    fmt: str,
    out: Path,
) -> str | None:
    """Run the load while py-spy samples; None on success, else py-spy's complaint."""
    assert target.proc is not None
    spy = _record(py_spy, target.proc.pid, seconds, fmt, out)
    # Load slightly longer than the recording, so every sample is under load.
    result = scenario.run(env, target.port, seconds + 1.0, False)
    try:
        output, _ = spy.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        output, _ = spy.communicate(timeout=10)
    if result.error:
        return f"load failed: {result.error}"
    if spy.returncode != 0 or not out.exists():
        return f"py-spy failed ({spy.returncode}): {output.strip()[-500:]}"
    return None


_LINE_RE = re.compile(r":\d+\)$")


def _frame(name: str) -> str:
    """'func (file.py:123)' -> 'func (file.py)': group a function's lines together."""
    return _LINE_RE.sub(")", name.strip())


def top_functions(raw: Path, limit: int = TOP_N) -> str:
    """A 'top'-like summary of py-spy's raw (collapsed stacks) output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    if not samples:
        return "no samples\n"
    lines = [f"{samples} samples", "", f"{'own %':>7} {'total %':>8}  function"]
    for name, count in own.most_common(limit):
        lines.append(f"{100 * count / samples:7.1f} {100 * total[name] / samples:8.1f}  {name}")
    lines += ["", f"{'total %':>8}  function (by inclusive time)"]
    for name, count in total.most_common(limit):
        lines.append(f"{100 * count / samples:8.1f}  {name}")
    return "\n".join(lines) + "\n"


def profile(
    py_spy: str,
    target: Target,
    env: BenchEnv,
    scenario: Scenario,
    seconds: float,
    results_dir: Path,
) -> list[str]:
    """Writes profile-<scenario>.svg, .txt (collapsed stacks) and -top.txt; returns errors."""
    svg = results_dir / f"profile-{scenario.key}.svg"
    raw = results_dir / f"profile-{scenario.key}.txt"
    errors = []
    for fmt, out in (("flamegraph", svg), ("raw", raw)):
        if error := _profile_once(py_spy, target, env, scenario, seconds, fmt, out):
            errors.append(f"{fmt}: {error}")
    if raw.exists():
        (results_dir / f"profile-{scenario.key}-top.txt").write_text(top_functions(raw))
    return errors
