"""``grpc-proxy register`` and ``register()`` against real etcd: the key is held
by a lease, revoked on SIGTERM, expires after SIGKILL, survives outages, comes
back after an expiry, and follows a grpc.health.v1 check; routing through the
real proxy follows."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import etcd_harness as etcd
import grpc
import pytest
import trio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from harness import REPO_ROOT, Stack, free_port, location, make_config, upstream

from grpc_proxy_demo.echo import subprocess_env
from proxy.discovery.registration import register

PREFIX = "/services/reg/"
TTL = 2


def wait_until(cond: Callable[[], bool], limit: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if cond():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not {what} after {limit}s")


@pytest.fixture
def etcd1(tmp_path: Path) -> Iterator[etcd.EtcdMember]:
    member = etcd.single(tmp_path).start()
    try:
        yield member
    finally:
        member.stop()


@contextlib.contextmanager
def registrar(stack: Stack, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    log = open(stack.workdir / "register.stderr", "ab")  # noqa: SIM115 - closed below
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
            proc.kill()
        proc.wait(5.0)
        log.close()


def register_log(stack: Stack) -> str:
    return (stack.workdir / "register.stderr").read_text(errors="replace")


def test_cli_registers_routes_and_sigterm_withdraws_at_once(
    stack: Stack, etcd1: etcd.EtcdMember
) -> None:
    kv = etcd.Client(etcd1.url)
    b1 = stack.backend("b1")
    config = make_config(
        free_port(),
        [upstream("reg", [], f"etcd {etcd1.url} prefix={PREFIX}")],
        [location("/echo.Echo/", "grpc_pass reg")],
    )
    client = stack.client(stack.proxy(config).port)
    with registrar(
        stack,
        "--etcd",
        etcd1.url,
        "--prefix",
        PREFIX,
        "--address",
        f"127.0.0.1:{b1.port}",
        "--id",
        "one",
        "--ttl",
        str(TTL),
        "--weight",
        "3",
        "--meta",
        "version=v1",
    ) as proc:
        wait_until(lambda: PREFIX + "one" in kv.get_prefix(PREFIX), 10, "registered")
        value = json.loads(kv.get_prefix(PREFIX)[PREFIX + "one"])
        assert value == {"address": f"127.0.0.1:{b1.port}", "weight": 3, "meta": {"version": "v1"}}
        wait_until(lambda: client.unary(b"x", timeout=5).backend == "b1", 5, "routed")
        time.sleep(TTL * 1.5)  # kept alive beyond one TTL
        assert PREFIX + "one" in kv.get_prefix(PREFIX)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        # Gone as the process exits: the lease was revoked, not left to expire.
        assert kv.get_prefix(PREFIX) == {}, register_log(stack)
        wait_until(
            lambda: client.unary(b"x", timeout=5).code == grpc.StatusCode.UNAVAILABLE, 2, "unrouted"
        )


def test_sigkill_expires_within_ttl(stack: Stack, etcd1: etcd.EtcdMember) -> None:
    kv = etcd.Client(etcd1.url)
    with registrar(
        stack,
        "--etcd",
        etcd1.url,
        "--prefix",
        PREFIX,
        "--address",
        "127.0.0.1:7001",
        "--ttl",
        str(TTL),
    ) as proc:
        wait_until(lambda: bool(kv.get_prefix(PREFIX)), 10, "registered")
        assert list(kv.get_prefix(PREFIX)) == [PREFIX + "127.0.0.1:7001"]  # id = address
        proc.kill()
        proc.wait(5)
        killed = time.monotonic()
        wait_until(lambda: kv.get_prefix(PREFIX) == {}, TTL + 5, "expired")
        assert time.monotonic() - killed < TTL + 1


def test_sigint_withdraws_too(stack: Stack, etcd1: etcd.EtcdMember) -> None:
    kv = etcd.Client(etcd1.url)
    with registrar(
        stack, "--etcd", etcd1.url, "--prefix", PREFIX, "--address", "127.0.0.1:7002", "--ttl", "30"
    ) as proc:
        wait_until(lambda: bool(kv.get_prefix(PREFIX)), 10, "registered")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert kv.get_prefix(PREFIX) == {}


def test_api_reregisters_after_expiry_and_survives_outage(
    stack: Stack, etcd1: etcd.EtcdMember
) -> None:
    kv = etcd.Client(etcd1.url)
    key = PREFIX + "api"

    async def scenario() -> None:
        with trio.fail_after(60):
            async with register(
                [etcd1.url], PREFIX, "127.0.0.1:7003", id="api", ttl=3, dial_timeout=1.0
            ) as reg:
                await reg.wait_registered()
                assert key in await trio.to_thread.run_sync(kv.get_prefix, PREFIX)
                # The lease disappears behind its back (as if it expired).
                kv.call("/v3/lease/revoke", {"ID": str(reg.lease)})
                assert await trio.to_thread.run_sync(kv.get_prefix, PREFIX) == {}
                for _ in range(100):
                    if key in await trio.to_thread.run_sync(kv.get_prefix, PREFIX):
                        break
                    await trio.sleep(0.05)
                assert key in await trio.to_thread.run_sync(kv.get_prefix, PREFIX)
                # etcd down for less than the TTL, then back: still registered.
                await trio.to_thread.run_sync(etcd1.stop)
                await trio.sleep(1.5)
                await trio.to_thread.run_sync(etcd1.start)
                await trio.sleep(3.5)  # past the TTL: held by keepalives, not by luck
                assert key in await trio.to_thread.run_sync(kv.get_prefix, PREFIX)
        # Leaving the block revoked the lease.
        assert await trio.to_thread.run_sync(kv.get_prefix, PREFIX) == {}

    trio.run(scenario)


def test_health_check_controls_the_key(stack: Stack, etcd1: etcd.EtcdMember) -> None:
    kv = etcd.Client(etcd1.url)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stack.defer(lambda: server.stop(None))
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    with registrar(
        stack,
        "--etcd",
        etcd1.url,
        "--prefix",
        PREFIX,
        "--address",
        "127.0.0.1:7004",
        "--ttl",
        str(TTL),
        "--health",
        f"127.0.0.1:{port}",
    ):
        time.sleep(TTL)
        assert kv.get_prefix(PREFIX) == {}  # never registered while not serving
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        wait_until(lambda: bool(kv.get_prefix(PREFIX)), TTL + 5, "registered")
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        wait_until(lambda: kv.get_prefix(PREFIX) == {}, TTL + 5, "withdrawn")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("foo://x", 'invalid etcd URL "foo://x", it must be http://host:port or https://host:port'),
        (
            "http://127.0.0.1:2379,x:2379",
            'invalid etcd URL "x:2379", it must be http://host:port or https://host:port',
        ),
        ("http://etcd", 'invalid etcd URL "http://etcd", it needs a host and a port'),
    ],
)
def test_cli_refuses_a_bad_etcd_url_at_once(url: str, reason: str) -> None:
    """Not retried for ever: checked before anything else, exit 1, one line."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "register",
            "--etcd",
            url,
            "--prefix",
            PREFIX,
            "--address",
            "127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=subprocess_env(),
    )
    assert (r.returncode, r.stdout, r.stderr) == (1, "", f"grpc-proxy register: --etcd: {reason}\n")


def test_register_refuses_a_bad_etcd_url_before_any_io() -> None:
    async def main() -> None:
        async with register("foo://x", PREFIX, "127.0.0.1:1"):
            raise AssertionError("registered with a bad URL")

    with pytest.raises(ValueError, match="invalid etcd URL"):
        trio.run(main)
