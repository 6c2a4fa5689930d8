"""Balancing benchmark: three backends, one of them 10x slower.

    .venv/bin/python benchmarks/slow_backend.py [--seconds 8] [--repeat 1]

Backends: the C++ echo server (benchmarks/cpp), whose Unary replies wait on an
alarm: two answer after FAST_MS, one after 10 x FAST_MS. Load: h2load, 10
connections x 10 streams, as fast as it goes, through each proxy in turn:
grpc-proxy with ``least_time``, ``random two least_conn`` and round robin,
nginx with ``least_conn`` and Envoy with ``LEAST_REQUEST``. Reports calls/s,
p50 and p99 (from h2load's per-request log) and the share of calls each
backend got (from the p99 shape: a policy that keeps the slow backend under
1 % of calls has a p99 near the fast backends' latency).
Proxies on CPU 1, backends and h2load on CPU 0, as run.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from harness import loads, procs, targets
from harness.targets import LaunchContext, Target, check_serving
from harness.tools import BUILD_DIR, REPO_DIR, find_tools

FAST_MS = 2
SLOW_MS = 10 * FAST_MS
CONNECTIONS, STREAMS = 10, 10


def _grpc_proxy_conf(method: str) -> Callable[[int, list[int]], str]:
    def conf(port: int, backends: list[int]) -> str:
        text = targets.grpc_proxy_config(port, backends)
        return text.replace("upstream bench { ", f"upstream bench {{ {method} ") if method else text

    return conf


def _start(
    name: str, cmd: list[str], port: int, ctx: LaunchContext, workdir: Path, cwd: Path | None = None
) -> Target:
    env = targets.grpc_proxy_env() if cwd is not None else None
    proc = procs.start(name, cmd, workdir, cpus=ctx.proxy_cpus, cwd=cwd, env=env)
    target = Target(name, port, proc)
    if not procs.wait_port(port, targets.START_TIMEOUT, proc):
        target.error = f"did not start: {proc.log_tail(5)}"
    else:
        target.error = check_serving(ctx.stream_client, port, ctx.client_cpus)
    return target


def launch(kind: str, ctx: LaunchContext, tools: object, workdir: Path) -> Target:
    port, admin = procs.free_ports(2)
    if kind == "nginx least_conn":
        d = workdir / f"nginx-{port}"  # one per run: --repeat starts it again
        d.mkdir()
        conf = d / "nginx.conf"
        conf.write_text(
            targets.nginx_config(d, port, ctx.backends).replace(
                "    upstream bench {\n", "    upstream bench {\n        least_conn;\n"
            )
        )
        return _start(
            kind,
            [
                tools.nginx,
                "-p",
                str(d),
                "-c",
                str(conf),  # type: ignore[attr-defined]
                "-g",
                "daemon off;",
            ],
            port,
            ctx,
            workdir,
        )
    if kind == "envoy LEAST_REQUEST":
        config = targets.envoy_config(port, admin, ctx.backends)
        config["static_resources"]["clusters"][0]["lb_policy"] = "LEAST_REQUEST"  # type: ignore[index]
        conf = workdir / "envoy.json"
        conf.write_text(json.dumps(config, indent=1))
        return _start(
            kind,
            [
                tools.envoy,
                "-c",
                str(conf),
                "--concurrency",
                "1",  # type: ignore[attr-defined]
                "--disable-hot-restart",
                "-l",
                "warning",
            ],
            port,
            ctx,
            workdir,
        )
    method = {
        "grpc-proxy least_time": "least_time;",
        "grpc-proxy random two least_conn": "random two least_conn;",
        "grpc-proxy round robin": "",
    }[kind]
    conf = workdir / f"grpc-proxy-{kind.split()[-1]}.conf"
    conf.write_text(_grpc_proxy_conf(method)(port, ctx.backends))
    return _start(
        kind.replace(" ", "_"),
        targets.grpc_proxy_command(conf, None),
        port,
        ctx,
        workdir,
        cwd=REPO_DIR,
    )


KINDS = [
    "grpc-proxy least_time",
    "grpc-proxy random two least_conn",
    "grpc-proxy round robin",
    "nginx least_conn",
    "envoy LEAST_REQUEST",
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--proxy-cpus", default="1")
    p.add_argument("--load-cpus", default="0")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the proxies whose name contains TEXT (repeatable)",
    )
    args = p.parse_args()
    kinds = [k for k in KINDS if not args.only or any(t in k for t in args.only)]
    tools = find_tools(need_py_spy=False)
    if isinstance(tools, list):
        print("missing tools; run:\n" + "\n".join(tools), file=sys.stderr)
        return 2
    workdir = BUILD_DIR / "run-slow-backend"
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    body = workdir / "unary-body.bin"
    body.write_bytes(loads.grpc_unary_body(32))
    backends: list[procs.Proc] = []
    started: list[Target] = []
    rows: list[dict[str, object]] = []
    try:
        ports = procs.free_ports(3)
        for i, (port, delay) in enumerate(zip(ports, (FAST_MS, FAST_MS, SLOW_MS), strict=True)):
            proc = procs.start(
                f"backend{i}",
                [str(tools.echo_server), str(port), "1", str(delay)],
                workdir,
                cpus=args.load_cpus,
            )
            backends.append(proc)
            if not procs.wait_port(port, 10.0, proc):
                raise RuntimeError(f"backend {port} did not start: {proc.log_tail()}")
        ctx = LaunchContext(workdir, ports, args.proxy_cpus, tools.stream_client, args.load_cpus)
        for _ in range(args.repeat):
            for kind in kinds:
                target = launch(kind, ctx, tools, workdir)
                started.append(target)
                row: dict[str, object] = {"proxy": kind}
                if target.error:
                    row["error"] = target.error
                else:
                    warm = loads.H2loadRun(
                        tools.h2load,
                        target.port,
                        CONNECTIONS,
                        STREAMS,
                        args.warmup,
                        body,
                        args.load_cpus,
                    )
                    loads.run_h2load(warm, None)
                    run = loads.H2loadRun(
                        tools.h2load,
                        target.port,
                        CONNECTIONS,
                        STREAMS,
                        args.seconds,
                        body,
                        args.load_cpus,
                    )
                    res = loads.run_h2load(run, workdir / f"h2load-{target.port}.log")
                    row.update(
                        rate=res.rate,
                        p50=res.p50_ms,
                        p99=res.p99_ms,
                        errors=res.errors,
                        error=res.error,
                    )
                if target.proc is not None:
                    procs.stop(target.proc)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for t in started:
            if t.proc is not None:
                procs.stop(t.proc)
        for b in backends:
            procs.stop(b)
    print(
        f"\nthree backends: two reply after {FAST_MS} ms, one after {SLOW_MS} ms; "
        f"h2load -c {CONNECTIONS} -m {STREAMS}, {args.seconds:g} s per run\n"
    )
    print("| proxy | calls/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|")
    for r in rows:
        if "rate" in r:
            print(
                f"| {r['proxy']} | {r['rate']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                f"{r['errors']} |"
            )
        else:
            print(f"| {r['proxy']} | - | - | - | {r.get('error')} |")
    _summary(rows)
    (workdir / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


def _summary(rows: list[dict[str, object]]) -> None:
    """Medians over the repeats, and each p99 as a ratio to nginx's."""
    from statistics import median

    med: dict[str, tuple[float, float, float]] = {}
    for kind in KINDS:
        ok = [r for r in rows if r["proxy"] == kind and "rate" in r]
        if ok:
            med[kind] = tuple(
                median(float(r[k]) for r in ok)  # type: ignore[assignment]
                for k in ("rate", "p50", "p99")
            )
    base = med.get("nginx least_conn")
    print("\nmedians | calls/s | p50 ms | p99 ms | nginx p99 / p99")
    print("|---|---|---|---|---|")
    for kind, (rate, p50, p99) in med.items():
        ratio = f"{base[2] / p99:.2f}x" if base else "-"
        print(f"| {kind} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
