"""docker-compose.yml's topology as plain processes on 127.0.0.1: a 3-member etcd
cluster, three echo backends (two version v1, one v2) each kept registered by a
``grpc-proxy register --health`` process, and two proxies running
conf/compose/grpc-proxy.conf itself with only hosts and ports rewritten. A grpcio
client sees its calls spread over every backend through either proxy, and
``version`` metadata routes to the backends of that version only."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import etcd_harness as etcd
from harness import REPO_ROOT, EchoClient, ProxyProcess, Stack, free_ports, proxy_logs

from grpc_proxy_demo.echo import EchoProcess, subprocess_env

COMPOSE_CONF = REPO_ROOT / "conf" / "compose" / "grpc-proxy.conf"
PREFIX = "/services/echo/"  # what conf/compose/grpc-proxy.conf watches
BACKENDS = {"backend-v1a": "v1", "backend-v1b": "v1", "backend-v2": "v2"}
CALLS = 45


def wait_until(cond: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"not {what} after {limit}s")


def local_config(etcd_urls: str, listen: int, admin: int) -> str:
    """The compose config, pointed at this machine; every directive kept."""
    text = COMPOSE_CONF.read_text()
    compose_etcd = "http://etcd1:2379,http://etcd2:2379,http://etcd3:2379"
    assert compose_etcd in text and PREFIX in text
    text = text.replace(compose_etcd, etcd_urls)
    text, n_admin = re.subn(r"listen 0\.0\.0\.0:9901;", f"listen 127.0.0.1:{admin};", text)
    text, n_listen = re.subn(r"listen 0\.0\.0\.0:8080 ", f"listen 127.0.0.1:{listen} ", text)
    assert (n_admin, n_listen) == (1, 1), "conf/compose/grpc-proxy.conf changed its listens"
    return text


def registrar(stack: Stack, name: str, port: int, urls: str) -> subprocess.Popen[bytes]:
    log = open(stack.workdir / f"register-{name}.stderr", "ab")  # noqa: SIM115 - closed below
    env = {k: v for k, v in subprocess_env().items() if not k.lower().endswith("_proxy")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy",
            "register",
            "--etcd",
            urls,
            "--prefix",
            PREFIX,
            "--id",
            name,
            "--address",
            f"127.0.0.1:{port}",
            "--ttl",
            "10",
            "--meta",
            f"version={BACKENDS[name]}",
            "--health",
            f"127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        cwd=str(REPO_ROOT),
        env=env,
    )
    log.close()

    def stop() -> None:  # SIGTERM revokes the lease; by PID, bounded
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    stack.defer(stop)
    return proc


def ready(admin: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def test_compose_topology_as_processes(stack: Stack, tmp_path: Path) -> None:
    members = etcd.cluster(tmp_path, 3)
    for m in members:
        stack.defer(m.stop)
    etcd.start_cluster(members)
    urls = ",".join(m.url for m in members)

    for name in BACKENDS:
        backend = EchoProcess(name, 0, health=True, stderr_path=tmp_path / f"echo-{name}.stderr")
        stack.defer(backend.stop)
        backend.start()
        registrar(stack, name, backend.port, urls)

    kv = etcd.Client(*(m.url for m in members))
    wait_until(lambda: len(kv.get_prefix(PREFIX)) == 3, 15, "all three registered")

    # (ProxyProcess.port is the first listen in the file, here the admin one.)
    proxies: list[tuple[ProxyProcess, int]] = []
    for i in range(2):
        listen, admin = free_ports(2)
        proxies.append((stack.proxy(local_config(urls, listen, admin)), listen))
        wait_until(lambda a=admin: ready(a), 10, f"proxy {i + 1} ready")

    for _proxy, listen in proxies:
        client = EchoClient(stack.channel(listen))
        wait_until(lambda c=client: c.unary(b"x", timeout=5).ok, 10, "serving")

        def pool_complete(c: EchoClient = client) -> bool:
            return {c.unary(b"x", timeout=5).backend for _ in range(9)} == set(BACKENDS)

        wait_until(pool_complete, 10, f"all backends through port {listen}")

        spread = Counter(client.unary(b"x", timeout=5).backend for _ in range(CALLS))
        assert set(spread) == set(BACKENDS), (spread, proxy_logs(stack))
        # least_conn breaks ties by round robin: sequential calls share out evenly.
        assert min(spread.values()) >= CALLS // 6, spread

        for version in ("v1", "v2"):
            wanted = {n for n, v in BACKENDS.items() if v == version}
            got = Counter()
            for _ in range(12):
                r = client.unary(b"x", metadata=[("version", version)], timeout=5)
                assert r.ok, (r.code, r.details)
                got[r.backend] += 1
            assert set(got) == wanted, (version, got)
        # An unknown version still gets served (subset_fallback any).
        r = client.unary(b"x", metadata=[("version", "v9")], timeout=5)
        assert r.ok and r.backend in BACKENDS

    # Both proxies logged their calls (access_log stderr), and both stop cleanly.
    for proxy, _ in proxies:  # the log is flushed every 0.5 s
        wait_until(lambda p=proxy: "/echo.Echo/Unary" in p.stderr(), 5, "access log written")
        assert proxy.stop(10) == 0, proxy.stderr_tail()
