"""The things under test: nginx, Envoy, grpc-proxy (pure Python, and its compiled build)
(and "direct", no proxy at all; "trio-pipe", a byte pipe)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import procs
from harness.loads import LIGHT_PREFIX, LIGHT_SCENARIO
from harness.tools import MYPYC_DIR, REPO_DIR, VENV_PYTHON

NGINX, ENVOY, GRPC_PROXY, DIRECT = "nginx", "envoy", "grpc-proxy", "direct"
# grpc-proxy with worker_processes 2: only in the unpinned unary-load runs, to check
# that a second worker adds calls/s.
GRPC_PROXY_W2 = "grpc-proxy-w2"
# grpc-proxy (1 worker) from the compiled copy of this checkout (tools.build_mypyc).
GRPC_PROXY_MYPYC = "grpc-proxy-mypyc"
COMPILED_MARK = "compiled with mypyc"  # in the `python -m proxy --version` line
# Not proxies: trio_pipe.py, a byte pipe with grpc-proxy's I/O structure and no
# HTTP/2 (the floor under grpc-proxy's CPU per call): with write-through, as
# grpc-proxy writes now (-wt), and without, as it wrote before. Only when named.
TRIO_PIPE, TRIO_PIPE_WT = "trio-pipe", "trio-pipe-wt"
# Every target run.py can start, in report order (PROXIES: the default set).
PROXIES = (NGINX, ENVOY, GRPC_PROXY, GRPC_PROXY_MYPYC, GRPC_PROXY_W2)
FLOORS = (TRIO_PIPE, TRIO_PIPE_WT)
START_TIMEOUT = 20.0


@dataclass
class Target:
    """One endpoint that the load is sent to."""

    name: str
    port: int
    proc: procs.Proc | None = None
    error: str | None = None
    info: dict[str, object] = field(default_factory=dict)
    # Scenario keys and pinning modes this target runs in (None: all).
    only_scenarios: tuple[str, ...] | None = None
    only_pinning: tuple[str, ...] | None = None
    # Scenarios it cannot run: direct and the byte pipes reach the grpc++
    # backends only, not the light ones.
    skips: tuple[str, ...] = ()

    def runs(self, scenario: str, pinning: str) -> bool:
        return (
            (self.only_scenarios is None or scenario in self.only_scenarios)
            and (self.only_pinning is None or pinning in self.only_pinning)
            and scenario not in self.skips
        )

    @property
    def is_proxy(self) -> bool:
        return self.name != DIRECT

    @property
    def usable(self) -> bool:
        if self.error is None and self.proc is not None and not self.proc.alive():
            code = self.proc.popen.returncode
            self.error = f"exited with status {code}: {self.proc.log_tail(5)}"
        return self.error is None

    def pids(self) -> list[int]:
        return self.proc.tree() if self.proc is not None else []


# ---------------------------------------------------------------------------
# Configurations


def nginx_config(
    workdir: Path, port: int, backends: Sequence[int], light: Sequence[int] = ()
) -> str:
    """nginx as its users run it for gRPC: `grpc_pass grpc://` to an upstream with a
    pool of idle connections (`keepalive`), an `http2` listener, access log off.

    One worker, like grpc-proxy's and Envoy's one worker (CPU per call is compared;
    `worker_processes auto` gives 2 here and leaves the load side no core of its own).
    Timeouts and buffers are nginx's defaults. Raised from the defaults, because the
    benchmark needs it:
    - `keepalive 1000`: nginx sends each call on its own upstream connection; the pool
      holds more idle connections than calls in flight (100 in the load scenarios),
      or nginx closes and reopens upstream connections under load.
    - `keepalive_requests` (client and upstream): the default 1000 makes nginx close
      a connection (GOAWAY) after 1000 calls; gRPC clients keep theirs for hours.
    - `http2_max_concurrent_streams 1000`: the memory test opens 250 streams per
      connection (default 128).
    """
    # bench, and the light backends of unary-load-light, configured alike.
    pools = [("bench", "/", backends)] + ([("light", LIGHT_PREFIX, light)] if light else [])
    upstreams = "".join(
        f"    upstream {name} {{\n"
        + "".join(f"        server 127.0.0.1:{p};\n" for p in ports)
        + "        keepalive 1000;\n        keepalive_requests 1000000;\n    }\n"
        for name, _, ports in pools
    )
    locations = "".join(
        f"        location {prefix} {{\n            grpc_pass grpc://{name};\n        }}\n"
        for name, prefix, _ in pools
    )
    temp_paths = "\n".join(
        f"    {kind}_temp_path {workdir}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
worker_rlimit_nofile 16384;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
{temp_paths}
    keepalive_requests 1000000;
    http2_max_concurrent_streams 1000;
{upstreams}    server {{
        listen 127.0.0.1:{port} http2;
{locations}    }}
}}
"""


def envoy_config(
    port: int, admin_port: int, backends: Sequence[int], light: Sequence[int] = ()
) -> dict[str, object]:
    def address(p: int) -> dict[str, object]:
        return {"socket_address": {"address": "127.0.0.1", "port_value": p}}

    # The light backends of unary-load-light first: routes match in order.
    pools = ([("light", LIGHT_PREFIX, light)] if light else []) + [("bench", "/", backends)]
    # timeout 0s: no route timeout, streams may be long-lived.
    routes = [
        {"match": {"prefix": prefix}, "route": {"cluster": name, "timeout": "0s"}}
        for name, prefix, _ in pools
    ]

    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        "http2_protocol_options": {"max_concurrent_streams": 1000},
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": routes,
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    limits = {"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}

    def cluster(name: str, ports: Sequence[int]) -> dict[str, object]:
        return {
            "name": name,
            "type": "STATIC",
            "lb_policy": "ROUND_ROBIN",
            "circuit_breakers": {"thresholds": [limits]},
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                    "HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": address(p)}} for p in ports]}
                ],
            },
        }

    clusters = [cluster(name, ports) for name, _, ports in reversed(pools)]  # bench first
    listener = {
        "name": "grpc",
        "address": address(port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }
    return {
        "admin": {"address": address(admin_port)},
        "static_resources": {"listeners": [listener], "clusters": clusters},
    }


def grpc_proxy_config(
    port: int, backends: Sequence[int], workers: int = 1, light: Sequence[int] = ()
) -> str:
    # bench, and the light backends of unary-load-light, configured alike.
    pools = [("bench", "/", backends)] + ([("light", LIGHT_PREFIX, light)] if light else [])
    upstreams = "".join(
        f"upstream {name} {{ " + " ".join(f"server 127.0.0.1:{p};" for p in ports) + " }\n"
        for name, _, ports in pools
    )
    locations = "".join(
        f"    location {prefix} {{ grpc_pass {name}; }}\n" for name, prefix, _ in pools
    )
    return f"""worker_processes {workers};
{upstreams}server {{
    listen 127.0.0.1:{port} http2;
    http2_max_concurrent_streams 1000;
{locations}}}
"""


# ---------------------------------------------------------------------------
# Launching


@dataclass
class LaunchContext:
    workdir: Path
    backends: list[int]
    proxy_cpus: str | None
    stream_client: Path
    client_cpus: str | None
    light_backends: list[int] = field(default_factory=list)  # h2_echo, for unary-load-light


def check_serving(stream_client: Path, port: int, cpus: str | None) -> str | None:
    """One call of each RPC kind through the port; None when all were echoed."""
    cmd = procs.pinned(
        [str(stream_client), "--mode", "check", "--target", f"127.0.0.1:{port}", "--size", "64"],
        cpus,
    )
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "check calls timed out"
    if out.returncode == 0:
        return None
    lines = (out.stdout + out.stderr).strip().splitlines()
    detail = lines[-1] if lines else f"exit {out.returncode}"
    with contextlib.suppress(json.JSONDecodeError, TypeError, AttributeError):
        detail = json.loads(detail).get("error") or detail
    return f"check calls failed: {detail}"


def _await_ready(target: Target, ctx: LaunchContext) -> Target:
    proc = target.proc
    assert proc is not None
    if not procs.wait_port(target.port, START_TIMEOUT, proc):
        if proc.alive():
            why = f"not listening after {START_TIMEOUT:.0f}s"
        else:
            why = f"exited with status {proc.popen.returncode}"
        target.error = f"failed to start ({why}): {proc.log_tail(8)}".strip().rstrip(":")
        procs.stop(proc)
        return target
    error = check_serving(ctx.stream_client, target.port, ctx.client_cpus)
    if error:
        target.error = f"failed to serve: {error}"
        if not proc.alive():
            target.error += f"; exited: {proc.log_tail(8)}"
        procs.stop(proc)
    return target


def launch_nginx(ctx: LaunchContext, nginx: str, port: int) -> Target:
    workdir = ctx.workdir / NGINX
    workdir.mkdir(mode=0o755)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(workdir, port, ctx.backends, ctx.light_backends))
    cmd = [nginx, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]
    proc = procs.start(NGINX, cmd, ctx.workdir, cpus=ctx.proxy_cpus)
    return _await_ready(Target(NGINX, port, proc, info={"config": str(conf)}), ctx)


def launch_envoy(ctx: LaunchContext, envoy: str, port: int, admin_port: int) -> Target:
    conf = ctx.workdir / "envoy.json"
    conf.write_text(
        json.dumps(envoy_config(port, admin_port, ctx.backends, ctx.light_backends), indent=1)
    )
    cmd = [envoy, "-c", str(conf), "--concurrency", "1", "--disable-hot-restart", "-l", "warning"]
    proc = procs.start(ENVOY, cmd, ctx.workdir, cpus=ctx.proxy_cpus)
    return _await_ready(Target(ENVOY, port, proc, info={"config": str(conf)}), ctx)


def grpc_proxy_python() -> str:
    """The repo's venv, else the Python running the harness (e.g. another checkout's venv)."""
    return str(VENV_PYTHON) if VENV_PYTHON.is_file() else sys.executable


def grpc_proxy_command(conf: Path, override: str | None) -> list[str]:
    if override:
        return [part.replace("{config}", str(conf)) for part in shlex.split(override)]
    return [grpc_proxy_python(), "-m", "proxy", "-c", str(conf)]


def grpc_proxy_env(root: Path = REPO_DIR) -> dict[str, str]:
    """The environment grpc-proxy runs in: root's `proxy` package (this checkout's,
    or its compiled copy) first on sys.path (the venv may hold an editable install of
    another checkout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    return env


def _python_output(python: str, args: Sequence[str], root: Path) -> str:
    """What `python args` prints from root, in the environment of grpc-proxy."""
    try:
        out = subprocess.run(
            [python, *args],
            capture_output=True,
            text=True,
            cwd=root,
            env=grpc_proxy_env(root),
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return out.stdout.strip() or out.stderr.strip()[-200:]


def proxy_package(cmd: Sequence[str], root: Path = REPO_DIR) -> str | None:
    """Where `python -m proxy` in cmd imports the package from (None: not that form)."""
    if len(cmd) < 3 or list(cmd[1:3]) != ["-m", "proxy"]:
        return None
    return _python_output(cmd[0], ["-c", "import proxy; print(proxy.__file__)"], root)


def launch_grpc_proxy(
    ctx: LaunchContext, port: int, override: str | None, workers: int = 1
) -> Target:
    name = GRPC_PROXY if workers == 1 else GRPC_PROXY_W2
    conf = ctx.workdir / f"{name}.conf"
    conf.write_text(grpc_proxy_config(port, ctx.backends, workers, ctx.light_backends))
    cmd = grpc_proxy_command(conf, override)
    target = Target(name, port, info={"config": str(conf), "command": cmd})
    if workers != 1:
        target.only_scenarios = ("unary-load", LIGHT_SCENARIO)
        target.only_pinning = ("unpinned",)
    target.info["package"] = proxy_package(cmd)
    if target.info["package"] is not None:
        # The default install is pure Python: a checkout built in place is not it.
        version = _python_output(cmd[0], ["-m", "proxy", "--version"], REPO_DIR)
        target.info["version"] = version
        if COMPILED_MARK in version:
            target.error = (
                f"the checkout's proxy/ holds a compiled build ({version!r}): remove "
                "proxy/http2/*.so and proxy/relay/*.so to measure the pure-Python default"
            )
            return target
    target.proc = procs.start(
        name, cmd, ctx.workdir, cpus=ctx.proxy_cpus, cwd=REPO_DIR, env=grpc_proxy_env()
    )
    return _await_ready(target, ctx)


def launch_trio_pipe(ctx: LaunchContext, port: int, write_through: bool) -> Target:
    """benchmarks/trio_pipe.py in grpc-proxy's Python (and trio)."""
    name = TRIO_PIPE_WT if write_through else TRIO_PIPE
    backends = ",".join(f"127.0.0.1:{p}" for p in ctx.backends)
    cmd = [grpc_proxy_python(), str(REPO_DIR / "benchmarks" / "trio_pipe.py")]
    cmd += ["--port", str(port), "--backends", backends]
    if write_through:
        cmd.append("--write-through")
    proc = procs.start(name, cmd, ctx.workdir, cpus=ctx.proxy_cpus, cwd=REPO_DIR)
    target = Target(name, port, proc, info={"command": cmd}, skips=(LIGHT_SCENARIO,))
    return _await_ready(target, ctx)


def launch_grpc_proxy_mypyc(ctx: LaunchContext, port: int, build_error: str | None) -> Target:
    """grpc-proxy (1 worker) from the compiled copy in MYPYC_DIR (built by
    tools.build_mypyc; build_error: why that failed). --grpc-proxy-cmd does not apply."""
    name = GRPC_PROXY_MYPYC
    conf = ctx.workdir / f"{name}.conf"
    conf.write_text(grpc_proxy_config(port, ctx.backends, light=ctx.light_backends))
    cmd = grpc_proxy_command(conf, None)
    target = Target(name, port, info={"config": str(conf), "command": cmd})
    if build_error is not None:
        target.error = build_error
        return target
    target.info["package"] = proxy_package(cmd, MYPYC_DIR)
    version = _python_output(cmd[0], ["-m", "proxy", "--version"], MYPYC_DIR)
    target.info["version"] = version
    if COMPILED_MARK not in version:
        target.error = f"not the compiled build: `python -m proxy --version` says {version!r}"
        return target
    target.proc = procs.start(
        name, cmd, ctx.workdir, cpus=ctx.proxy_cpus, cwd=MYPYC_DIR, env=grpc_proxy_env(MYPYC_DIR)
    )
    return _await_ready(target, ctx)


def settle_and_measure_idle(target: Target, settle: float = 1.0) -> None:
    """Record the proxy's memory once it has started and served its check calls."""
    if not target.usable or not target.is_proxy:
        return
    time.sleep(settle)
    pids = target.pids()
    target.info["idle_rss_kib"] = procs.rss_kib(pids)
    target.info["idle_pss_kib"] = procs.pss_kib(pids)
    target.info["processes"] = len(pids)
