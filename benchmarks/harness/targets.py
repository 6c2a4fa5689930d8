"""The things under test: nginx, Envoy, grpc-proxy (and "direct", no proxy at all)."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import procs
from harness.tools import REPO_DIR, VENV_PYTHON

NGINX, ENVOY, GRPC_PROXY, DIRECT = "nginx", "envoy", "grpc-proxy", "direct"
START_TIMEOUT = 20.0


@dataclass
class Target:
    """One endpoint that the load is sent to."""

    name: str
    port: int
    proc: procs.Proc | None = None
    error: str | None = None
    info: dict[str, object] = field(default_factory=dict)

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


def nginx_config(workdir: Path, port: int, backends: Sequence[int]) -> str:
    """nginx, one worker, gRPC to the backends over reused (keepalive) connections.

    nginx sends each call on its own upstream connection, so the idle-connection cache
    (keepalive) must exceed the calls in flight: with 100 it churned connections
    under the 100-stream load (a TIME_WAIT socket every ~50 calls, ~10 % more CPU).
    """
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in backends)
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
    keepalive_timeout 300s;
    http2_max_concurrent_streams 1000;
    upstream bench {{
{servers}
        keepalive 1000;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{
            grpc_pass grpc://bench;
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
        }}
    }}
}}
"""


def envoy_config(port: int, admin_port: int, backends: Sequence[int]) -> dict[str, object]:
    def address(p: int) -> dict[str, object]:
        return {"socket_address": {"address": "127.0.0.1", "port_value": p}}

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
                    # timeout 0s: no route timeout, streams may be long-lived.
                    "routes": [{"match": {"prefix": "/"},
                                "route": {"cluster": "bench", "timeout": "0s"}}],
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
    limits = {"max_connections": 100000, "max_pending_requests": 100000,
              "max_requests": 100000}
    cluster = {
        "name": "bench",
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
            "cluster_name": "bench",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(p)}}
                                            for p in backends]}],
        },
    }
    listener = {
        "name": "grpc",
        "address": address(port),
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": manager}]}],
    }
    return {
        "admin": {"address": address(admin_port)},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


def grpc_proxy_config(port: int, backends: Sequence[int]) -> str:
    servers = " ".join(f"server 127.0.0.1:{p};" for p in backends)
    return f"""worker_processes 1;
upstream bench {{ {servers} }}
server {{
    listen 127.0.0.1:{port} http2;
    http2_max_concurrent_streams 1000;
    location / {{ grpc_pass bench; }}
}}
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


def check_serving(stream_client: Path, port: int, cpus: str | None) -> str | None:
    """One call of each RPC kind through the port; None when all were echoed."""
    cmd = procs.pinned([str(stream_client), "--mode", "check", "--target",
                        f"127.0.0.1:{port}", "--size", "64"], cpus)
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
    conf.write_text(nginx_config(workdir, port, ctx.backends))
    cmd = [nginx, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]
    proc = procs.start(NGINX, cmd, ctx.workdir, cpus=ctx.proxy_cpus)
    return _await_ready(Target(NGINX, port, proc, info={"config": str(conf)}), ctx)


def launch_envoy(ctx: LaunchContext, envoy: str, port: int, admin_port: int) -> Target:
    conf = ctx.workdir / "envoy.json"
    conf.write_text(json.dumps(envoy_config(port, admin_port, ctx.backends), indent=1))
    cmd = [envoy, "-c", str(conf), "--concurrency", "1", "--disable-hot-restart",
           "-l", "warning"]
    proc = procs.start(ENVOY, cmd, ctx.workdir, cpus=ctx.proxy_cpus)
    return _await_ready(Target(ENVOY, port, proc, info={"config": str(conf)}), ctx)


def grpc_proxy_command(conf: Path, override: str | None) -> list[str]:
    if override:
        return [part.replace("{config}", str(conf)) for part in shlex.split(override)]
    python = str(VENV_PYTHON) if VENV_PYTHON.is_file() else "python3"
    return [python, "-m", "proxy", "-c", str(conf)]


def launch_grpc_proxy(ctx: LaunchContext, port: int, override: str | None) -> Target:
    conf = ctx.workdir / "grpc-proxy.conf"
    conf.write_text(grpc_proxy_config(port, ctx.backends))
    cmd = grpc_proxy_command(conf, override)
    proc = procs.start(GRPC_PROXY, cmd, ctx.workdir, cpus=ctx.proxy_cpus, cwd=REPO_DIR)
    target = Target(GRPC_PROXY, port, proc, info={"config": str(conf), "command": cmd})
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
