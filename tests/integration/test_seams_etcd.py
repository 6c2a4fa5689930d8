"""Where etcd-fed pools (issue 4) meet reloads (issue 5), the admin listener
and metrics (issue 6) and balancing policies and subsets (issue 3): real etcd,
real proxy processes, real grpcio, ``grpc-proxy register`` as a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import etcd_harness as etcd
import grpc
import pytest
from admin_client import admin_block, present, scrape, status, total, upstreams, wait_for
from harness import (
    REPO_ROOT,
    EchoClient,
    ProxyProcess,
    Stack,
    free_ports,
    location,
    make_config,
    proxy_logs,
    upstream,
)

from grpc_proxy_demo.echo import subprocess_env

PREFIX = "/services/echo/"
OTHER_PREFIX = "/services/echo-next/"
POLL = 15.0  # bound of every wait for routing to follow


@pytest.fixture
def etcd1(tmp_path: Path) -> Iterator[etcd.EtcdMember]:
    member = etcd.single(tmp_path).start()
    try:
        yield member
    finally:
        member.stop()


def hostport(port: int) -> str:
    return f"127.0.0.1:{port}"


def etcd_config(
    port: int,
    admin: int,
    url: str,
    prefix: str = PREFIX,
    policy: tuple[str, ...] = (),
    extra_locations: tuple[str, ...] = (),
    read_timeout: str = "60s",
) -> str:
    up = upstream(
        "echo",
        [],
        f"etcd {url} prefix={prefix}",
        "etcd_dial_timeout 1s",
        "connect_timeout 1s",
        *policy,
    )
    locs = [
        location("/echo.Echo/", "grpc_pass echo", f"grpc_read_timeout {read_timeout}"),
        *extra_locations,
    ]
    return "shutdown_timeout 5s;\n" + make_config(port, [up], locs) + admin_block(admin)


def reload(proxy: ProxyProcess, config: str) -> None:
    """Write ``config`` and SIGHUP; wait for the proxy to log the reload."""
    done = proxy.stderr().count("configuration reloaded")
    proxy.config_path.write_text(config)
    os.kill(proxy.pid, signal.SIGHUP)
    assert wait_for(lambda: proxy.stderr().count("configuration reloaded") > done, 10), (
        proxy.stderr_tail()
    )


def backends_seen(client: EchoClient, calls: int, md: tuple[tuple[str, str], ...] = ()) -> set[str]:
    seen = set()
    for _ in range(calls):
        r = client.unary(b"x", metadata=md, timeout=5)
        seen.add(r.backend or "?" if r.ok else r.code.name)
    return seen


def wait_routing(client: EchoClient, want: set[str], stack: Stack) -> None:
    seen: set[str] = set()

    def check() -> bool:
        nonlocal seen
        seen = backends_seen(client, 3 * len(want) + 3)
        return seen == want

    assert wait_for(check, POLL, step=0.05), (seen, want, proxy_logs(stack))


class Load:
    """Unary calls on a few channels, back to back, until stopped; failures kept."""

    def __init__(self, stack: Stack, port: int, threads: int = 4) -> None:
        self.clients = [stack.client(port) for _ in range(threads)]
        self.failures: list[str] = []
        self.calls = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(c,), daemon=True) for c in self.clients
        ]

    def _run(self, client: EchoClient) -> None:
        for _ in range(1_000_000):
            if self._stop.is_set():
                return
            r = client.unary(b"x", timeout=10)
            self.calls += 1
            if not r.ok:
                self.failures.append(f"{r.code.name}: {r.details}")

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def test_reload_under_load_keeps_the_etcd_pool_and_follows_etcd_after_it(
    stack: Stack, etcd1: etcd.EtcdMember
) -> None:
    kv = etcd.Client(etcd1.url)
    b1, b2, b3 = (stack.backend(n) for n in ("b1", "b2", "b3"))
    kv.put(PREFIX + "b1", hostport(b1.port))
    kv.put(PREFIX + "b2", hostport(b2.port))
    port, admin = free_ports(2)
    proxy = stack.proxy(etcd_config(port, admin, etcd1.url))
    client = stack.client(port)
    wait_routing(client, {"b1", "b2"}, stack)

    with Load(stack, port) as load:
        # A reload with etcd up: a new location, a changed timeout.
        extra = (location("/echo2.", "grpc_pass echo"),)
        reload(
            proxy, etcd_config(port, admin, etcd1.url, extra_locations=extra, read_timeout="30s")
        )
        assert client.unary(b"x", path="/echo2.Echo/Unary").code == grpc.StatusCode.UNIMPLEMENTED
        kv.put(PREFIX + "b3", hostport(b3.port))
        wait_routing(client, {"b1", "b2", "b3"}, stack)

        # A reload while etcd is down: the new generation can only start from
        # the pool the old one published; it keeps serving it, and stays ready.
        etcd1.stop()
        reload(proxy, etcd_config(port, admin, etcd1.url, read_timeout="20s"))
        time.sleep(1.0)
        wait_routing(client, {"b1", "b2", "b3"}, stack)
        assert status(admin, "/readyz") == 200, upstreams(admin)
        calls_before = load.calls
        etcd1.start()
        kv.delete(PREFIX + "b1")
        wait_routing(client, {"b2", "b3"}, stack)
        time.sleep(0.5)
    assert not load.failures, (load.failures[:5], proxy_logs(stack))
    assert load.calls > calls_before > 0
    pool = upstreams(admin)["echo"]
    assert pool["source"] == "etcd" and pool["etcd"]["connected"], pool
    assert pool["etcd"]["revision"] == kv.revision(), pool
    assert sorted(e["address"] for e in pool["endpoints"]) == sorted(
        hostport(b.port) for b in (b2, b3)
    )


def test_reload_to_another_prefix_switches_to_its_endpoints(
    stack: Stack, etcd1: etcd.EtcdMember
) -> None:
    kv = etcd.Client(etcd1.url)
    b1, b2 = stack.backend("b1"), stack.backend("b2")
    kv.put(PREFIX + "b1", hostport(b1.port))
    kv.put(OTHER_PREFIX + "b2", hostport(b2.port))
    port, admin = free_ports(2)
    proxy = stack.proxy(etcd_config(port, admin, etcd1.url))
    client = stack.client(port)
    wait_routing(client, {"b1"}, stack)
    reload(proxy, etcd_config(port, admin, etcd1.url, prefix=OTHER_PREFIX))
    wait_routing(client, {"b2"}, stack)
    # The old prefix is no longer followed; the new one is.
    kv.put(PREFIX + "b1-again", hostport(b1.port))
    kv.put(OTHER_PREFIX + "b1", hostport(b1.port))
    wait_routing(client, {"b1", "b2"}, stack)
    kv.delete(OTHER_PREFIX + "b1")
    wait_routing(client, {"b2"}, stack)
    assert status(admin, "/readyz") == 200


def test_readyz_waits_for_the_first_etcd_sync_and_admin_shows_the_feed(
    stack: Stack, tmp_path: Path
) -> None:
    member = etcd.single(tmp_path, "late")
    stack.defer(member.stop)
    b1 = stack.backend("b1")
    port, admin = free_ports(2)
    stack.proxy(etcd_config(port, admin, member.url))
    assert status(admin, "/healthz") == 200
    for _ in range(5):  # etcd is down: never ready, however long we look
        assert status(admin, "/readyz") == 503
        time.sleep(0.2)
    pool = upstreams(admin)["echo"]
    assert pool["source"] == "etcd" and pool["endpoints"] == [], pool
    assert pool["etcd"]["connected"] is False and pool["etcd"]["synced_once"] is False, pool
    m = scrape(admin)
    assert total(m, "grpc_proxy_etcd_connected", upstream="echo") == 0, m

    member.start()
    kv = etcd.Client(member.url)
    kv.put(PREFIX + "b1", hostport(b1.port))
    assert wait_for(lambda: status(admin, "/readyz") == 200, POLL), upstreams(admin)
    wait_routing(stack.client(port), {"b1"}, stack)
    pool = upstreams(admin)["echo"]
    feed = pool["etcd"]
    assert feed["connected"] is True and feed["synced_once"] is True, pool
    assert feed["revision"] == kv.revision(), (feed, kv.revision())
    (ep,) = pool["endpoints"]
    assert (ep["address"], ep["source"]) == (hostport(b1.port), "etcd"), ep
    m = scrape(admin)
    assert total(m, "grpc_proxy_etcd_connected", upstream="echo") == 1, m
    assert total(m, "grpc_proxy_etcd_revision", upstream="echo") == kv.revision(), m
    assert present(m, "grpc_proxy_etcd_resyncs_total"), sorted({n for n, _ in m})


@contextlib.contextmanager
def registered(
    stack: Stack, url: str, name: str, port: int, *meta: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``grpc-proxy register`` for one backend, stopped by PID at the end."""
    args = [
        "--etcd",
        url,
        "--prefix",
        PREFIX,
        "--address",
        hostport(port),
        "--id",
        name,
        "--ttl",
        "5",
    ]
    for m in meta:
        args += ["--meta", m]
    with open(stack.workdir / f"register-{name}.stderr", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "register", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=str(REPO_ROOT),
            env=subprocess_env(),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_subset_and_least_conn_on_a_pool_registered_with_labels(
    stack: Stack, etcd1: etcd.EtcdMember
) -> None:
    b1, b2, b3 = (stack.backend(n) for n in ("b1", "b2", "b3"))
    port, admin = free_ports(2)
    stack.proxy(etcd_config(port, admin, etcd1.url, policy=("least_conn", "subset version")))
    client = stack.client(port)
    with contextlib.ExitStack() as regs:
        regs.enter_context(registered(stack, etcd1.url, "b1", b1.port, "version=v1"))
        regs.enter_context(registered(stack, etcd1.url, "b2", b2.port, "version=v2"))
        regs.enter_context(registered(stack, etcd1.url, "b3", b3.port, "version=v2", "zone=a"))
        wait_routing(client, {"b1", "b2", "b3"}, stack)
        labels = {e["address"]: e["labels"] for e in upstreams(admin)["echo"]["endpoints"]}
        assert labels[hostport(b3.port)] == {"version": "v2", "zone": "a"}, labels

        v1, v2 = (("version", "v1"),), (("version", "v2"),)
        assert backends_seen(client, 10, v1) == {"b1"}
        assert backends_seen(client, 20, v2) == {"b2", "b3"}  # ties: round robin
        r = client.unary(b"x", metadata=[("version", "v9")], timeout=5)
        assert r.code == grpc.StatusCode.UNAVAILABLE, r
        assert r.details == "no upstream endpoint matches version=v9", r

        # least_conn inside the subset: while one v2 endpoint holds a slow
        # call, the other gets every new v2 call (round robin would alternate).
        slow_client = stack.client(port)
        slow: list[object] = []
        t = threading.Thread(
            target=lambda: slow.append(
                slow_client.unary(b"slow", metadata=[*v2, ("x-sleep-ms", "4000")], timeout=20)
            )
        )
        t.start()
        busy = None
        for _ in range(100):
            busy = next((b for b in (b2, b3) if any(not c.done for c in b.events.snapshot())), None)
            if busy is not None:
                break
            time.sleep(0.05)
        assert busy is not None
        idle = "b3" if busy is b2 else "b2"
        assert backends_seen(client, 10, v2) == {idle}
        t.join(20)
        assert slow and slow[0].ok, slow  # type: ignore[attr-defined]
