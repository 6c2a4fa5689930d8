"""Flow control through the proxy: a slow reader of a 1 GiB server stream must not
make the proxy buffer (RSS stays within 64 MiB of its idle size), bulk uploads
arrive intact, and a slow backend reader holds back a fast uploader."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from harness import (
    EchoClient,
    MiB,
    ProxyProcess,
    RssSampler,
    Stack,
    addr,
    free_port,
    location,
    make_config,
    proxy_logs,
    upstream,
)

from grpc_proxy_demo.echo import EchoProcess, pattern, summary

pytestmark = pytest.mark.slow

RSS_LIMIT = 64 * MiB


@dataclass
class Env:
    stack: Stack
    backend: EchoProcess
    proxy: ProxyProcess
    client: EchoClient


@pytest.fixture(scope="module")
def env(module_stack: Stack) -> Env:
    # The backend runs in its own process so that it does not compete with this
    # test's client for the GIL.
    backend = module_stack.echo_process("bulk")
    config = make_config(
        free_port(),
        [upstream("bulk", [addr(backend.port)], "connect_timeout 2s")],
        [location("/", "grpc_pass bulk")],
    )
    proxy = module_stack.proxy(config)
    client = module_stack.client(proxy.port)
    # warm up: let the proxy reach its steady state before any baseline
    r = client.server_stream(b"", [("x-count", "8"), ("x-size", str(MiB))], timeout=30)
    assert r.ok, (r, proxy_logs(module_stack))
    assert client.client_stream([pattern(i, MiB) for i in range(8)], timeout=30).ok
    return Env(module_stack, backend, proxy, client)


def _idle_rss(proxy: ProxyProcess) -> int:
    samples = []
    for _ in range(5):
        samples.append(proxy.rss())
        time.sleep(0.1)
    return int(statistics.median(samples))


def test_slow_reader_1gib_server_stream_bounded_memory(env: Env) -> None:
    count, size = 1024, MiB  # 1 GiB
    slow_messages, slow_pause = 30, 0.1  # ~3 s of a stalled reader first
    baseline = _idle_rss(env.proxy)
    corrupt: list[int] = []

    def on_message(i: int, msg: bytes) -> None:
        if msg != pattern(i, size) and len(corrupt) < 10:
            corrupt.append(i)
        if i < slow_messages:
            time.sleep(slow_pause)

    with RssSampler(env.proxy.pid) as rss:
        r = env.client.server_stream(
            b"",
            [("x-count", str(count)), ("x-size", str(size))],
            timeout=90,
            on_message=on_message,
            keep=False,
        )
    assert r.ok, (r, proxy_logs(env.stack))
    assert r.count == count
    assert not corrupt, f"messages {corrupt} differ from the pattern"
    growth = rss.peak - baseline
    print(
        f"1 GiB stream in {r.elapsed:.1f}s; proxy RSS idle {baseline / MiB:.1f} MiB, "
        f"peak {rss.peak / MiB:.1f} MiB (+{growth / MiB:.1f}), {len(rss.samples)} samples"
    )
    assert len(rss.samples) >= 10
    assert growth < RSS_LIMIT, (
        f"proxy RSS grew by {growth / MiB:.1f} MiB (limit {RSS_LIMIT // MiB} MiB) "
        "under a slow reader: it buffers instead of applying flow control"
    )
    assert r.elapsed < 60, f"1 GiB took {r.elapsed:.1f}s"


def _upload(count: int, size: int) -> Iterator[bytes]:
    for i in range(count):
        yield pattern(i, size)


def test_fast_256mib_client_stream_upload_intact(env: Env) -> None:
    count, size = 256, MiB
    expected = summary(_upload(count, size))
    baseline = _idle_rss(env.proxy)
    with RssSampler(env.proxy.pid) as rss:
        r = env.client.client_stream(_upload(count, size), timeout=90)
    assert r.ok, (r, proxy_logs(env.stack))
    assert r.messages == [expected]
    print(
        f"256 MiB upload in {r.elapsed:.1f}s; proxy RSS peak +{(rss.peak - baseline) / MiB:.1f} MiB"
    )


def test_slow_backend_reader_holds_back_uploader(env: Env) -> None:
    """The backend reads one 1 MiB message per 25 ms: the proxy must stop reading
    from the client rather than buffer the upload."""
    count, size = 96, MiB
    expected = summary(_upload(count, size))
    baseline = _idle_rss(env.proxy)
    with RssSampler(env.proxy.pid) as rss:
        r = env.client.client_stream(_upload(count, size), [("x-sleep-ms", "25")], timeout=90)
    assert r.ok, (r, proxy_logs(env.stack))
    assert r.messages == [expected]
    growth = rss.peak - baseline
    assert growth < RSS_LIMIT, f"proxy RSS grew by {growth / MiB:.1f} MiB behind a slow backend"
