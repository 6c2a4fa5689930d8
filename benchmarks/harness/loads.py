"""Load generators: h2load for unary calls, the C++ stream_client for streams."""

from __future__ import annotations

import json
import re
import resource
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness import procs

UNARY_PATH = "/echo.Echo/Unary"
# Routed by every proxy to the light backends (h2_echo), for unary-load-light.
LIGHT_PATH = "/echo.Light/Unary"
LIGHT_PREFIX = "/echo.Light/"
# unary-load against the light backends: where worker_processes 2 is judged.
LIGHT_SCENARIO = "unary-load-light"
GRPC_HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
EXTRA_TIMEOUT = 90.0


@dataclass
class LoadResult:
    """What one load run measured. `units` are calls (unary) or messages (streams)."""

    units: int = 0
    elapsed_s: float = 0.0
    rate: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None
    errors: int = 0
    error: str | None = None
    generator_cpu_s: float = 0.0  # CPU time of the load generator process itself
    extra: dict[str, object] = field(default_factory=dict)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(cmd: list[str], timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run cmd to completion; its output and the CPU seconds it used.

    The CPU comes from the rusage of reaped children, so nothing else may be reaped
    meanwhile (the harness runs its load generators one at a time).
    """
    before = _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return proc, _children_cpu() - before


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def grpc_unary_body(payload_size: int) -> bytes:
    """A length-prefixed gRPC message holding echo.Msg{payload: 'x' * payload_size}."""
    payload = b"x" * payload_size
    msg = b"\x0a" + _varint(len(payload)) + payload  # field 1, wire type 2 (bytes)
    return b"\x00" + struct.pack(">I", len(msg)) + msg


# ---------------------------------------------------------------------------
# h2load

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"bad h2load time {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_h2load(output: str) -> dict[str, float]:
    """The numbers of h2load's summary: req/s, request counts, data bytes, latency stats."""
    out: dict[str, float] = {}
    if m := re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", output):
        out["elapsed_s"], out["req_per_s"] = float(m.group(1)), float(m.group(2))
    if m := re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        output,
    ):
        keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
        out.update({k: float(v) for k, v in zip(keys, m.groups(), strict=True)})
    if m := re.search(r"\((\d+)\) data", output):
        out["data_bytes"] = float(m.group(1))
    if m := re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output):
        for key, value in zip(("min_ms", "max_ms", "mean_ms", "sd_ms"), m.groups(), strict=True):
            out[key] = _to_ms(value)
    return out


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    idx = round(pct / 100.0 * (len(sorted_values) - 1))
    return sorted_values[min(idx, len(sorted_values) - 1)]


def log_latencies_ms(log_file: Path) -> list[float]:
    """Per-request times from h2load --log-file (start us, status, duration us), sorted."""
    values = []
    with log_file.open() as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1] == "200":
                values.append(int(parts[2]) / 1000.0)
    values.sort()
    return values


@dataclass
class H2loadRun:
    h2load: str
    port: int
    connections: int
    streams: int
    duration: float
    body_file: Path
    cpus: str | None
    rps_per_connection: int | None = None  # None: as fast as it goes
    path: str = UNARY_PATH


def run_h2load(run: H2loadRun, log_file: Path | None) -> LoadResult:
    cmd = [
        run.h2load,
        "-D",
        f"{round(run.duration * 1000)}ms",
        "-c",
        str(run.connections),
        "-m",
        str(run.streams),
        "-t",
        "1",
        "--data",
        str(run.body_file),
        *GRPC_HEADERS,
    ]
    if run.rps_per_connection:
        cmd += ["--rps", str(run.rps_per_connection)]
    if log_file is not None:
        cmd += ["--log-file", str(log_file)]
    cmd.append(f"http://127.0.0.1:{run.port}{run.path}")
    try:
        proc, cpu = run_measured(procs.pinned(cmd, run.cpus), run.duration + EXTRA_TIMEOUT)
    except subprocess.TimeoutExpired:
        return LoadResult(error="h2load timed out")
    result = _h2load_result(proc.stdout + proc.stderr, run.body_file.stat().st_size, log_file)
    result.generator_cpu_s = cpu
    return result


def _h2load_result(output: str, body_size: int, log_file: Path | None) -> LoadResult:
    stats = parse_h2load(output)
    if "succeeded" not in stats or "req_per_s" not in stats:
        tail = " | ".join(output.strip().splitlines()[-3:])
        return LoadResult(error=f"h2load gave no summary: {tail}")
    ok = int(stats["succeeded"])
    bad = int(stats["total"] - stats["succeeded"])
    result = LoadResult(
        units=ok,
        elapsed_s=stats["elapsed_s"],
        rate=stats["req_per_s"],
        mean_ms=stats.get("mean_ms"),
        max_ms=stats.get("max_ms"),
        errors=bad,
        extra={"h2load": stats},
    )
    # Every echoed response carries the request body back; a gRPC error
    # (trailers-only, HTTP 200) carries no data, and h2load would count it a success.
    if ok and stats.get("data_bytes", 0.0) < 0.99 * ok * body_size:
        result.error = "responses carried no echoed body (gRPC errors?)"
    if ok == 0:
        result.error = result.error or f"no successful calls ({bad} failed)"
    if log_file is not None and log_file.exists():
        latencies = log_latencies_ms(log_file)
        result.p50_ms, result.p99_ms = percentile(latencies, 50), percentile(latencies, 99)
        log_file.unlink()
    return result


# ---------------------------------------------------------------------------
# stream_client


@dataclass
class StreamRun:
    stream_client: Path
    mode: str  # server-stream | bidi
    port: int
    duration: float
    concurrency: int
    channels: int
    messages: int
    size: int
    cpus: str | None


def run_stream_client(run: StreamRun) -> LoadResult:
    cmd = [
        str(run.stream_client),
        "--mode",
        run.mode,
        "--target",
        f"127.0.0.1:{run.port}",
        "--duration",
        f"{run.duration:g}",
        "--concurrency",
        str(run.concurrency),
        "--channels",
        str(run.channels),
        "--messages",
        str(run.messages),
        "--size",
        str(run.size),
    ]
    try:
        proc, cpu = run_measured(procs.pinned(cmd, run.cpus), run.duration + EXTRA_TIMEOUT + 130)
    except subprocess.TimeoutExpired:
        return LoadResult(error="stream_client timed out")
    result = _stream_result(proc.stdout, proc.stderr)
    result.generator_cpu_s = cpu
    return result


def _stream_result(stdout: str, stderr: str) -> LoadResult:
    lines = stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = " | ".join((stdout + stderr).strip().splitlines()[-3:])
        return LoadResult(error=f"stream_client gave no result: {tail}")
    if "latency_ms" not in data:
        return LoadResult(error=str(data.get("error", data)))
    lat = data["latency_ms"]
    result = LoadResult(
        units=int(data["messages"]),
        elapsed_s=float(data["elapsed_s"]),
        rate=float(data["messages_per_s"]),
        p50_ms=lat["p50"],
        p99_ms=lat["p99"],
        mean_ms=lat["mean"],
        max_ms=lat["max"],
        errors=int(data["errors"]),
        extra={"stream_client": data},
    )
    if result.errors:
        result.error = f"{result.errors} calls failed: {data.get('first_error', '')}"
    return result
