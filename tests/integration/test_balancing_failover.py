"""Load balancing and failover through the proxy: weights per call on one client
connection, backup and down servers, a backend killed under load, and passive
health (max_fails / fail_timeout) with recovery."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

import grpc
from harness import (
    EchoClient,
    Result,
    Stack,
    addr,
    free_port,
    location,
    make_config,
    proxy_logs,
    run_in_threads,
    upstream,
)

from grpc_proxy_demo.echo import EchoBackend


def _proxy_client(stack: Stack, servers: list[str], *directives: str) -> EchoClient:
    proxy = stack.proxy(
        make_config(
            free_port(),
            [upstream("echo", servers, "connect_timeout 1s", *directives)],
            [location("/", "grpc_pass echo")],
        )
    )
    return stack.client(proxy.port)


def _calls(client: EchoClient, n: int) -> list[Result]:
    return [client.unary(f"call {i}".encode(), timeout=10) for i in range(n)]


def _by_backend(results: list[Result]) -> Counter[str | None]:
    return Counter(r.backend for r in results)


def _assert_all_ok(results: list[Result], stack: Stack) -> None:
    bad = [r for r in results if not r.ok]
    assert not bad, f"{len(bad)} of {len(results)} calls failed, e.g. {bad[0]}\n{proxy_logs(stack)}"


def test_weights_3_to_1_per_call_on_one_connection(stack: Stack) -> None:
    heavy, light = stack.backend("heavy"), stack.backend("light")
    client = _proxy_client(stack, [addr(heavy.port, "weight=3"), addr(light.port)])
    results = _calls(client, 400)
    _assert_all_ok(results, stack)
    counts = _by_backend(results)
    assert counts["heavy"] + counts["light"] == 400, counts
    assert counts["light"] > 0, counts
    ratio = counts["heavy"] / counts["light"]
    assert 2.4 <= ratio <= 3.6, f"heavy:light = {counts['heavy']}:{counts['light']}"
    # the backends agree with what the client saw
    assert heavy.events.count() == counts["heavy"]
    assert light.events.count() == counts["light"]


def test_streams_are_balanced_too(stack: Stack) -> None:
    a, b = stack.backend("a"), stack.backend("b")
    client = _proxy_client(stack, [addr(a.port), addr(b.port)])
    results = [client.server_stream(b"s", timeout=10) for _ in range(40)]
    results += [client.bidi([b"x"], timeout=10) for _ in range(40)]
    _assert_all_ok(results, stack)
    counts = _by_backend(results)
    assert counts["a"] >= 20 and counts["b"] >= 20, counts


def test_backup_idle_while_a_primary_is_up_then_takes_over(stack: Stack) -> None:
    p1, p2, spare = stack.backend("p1"), stack.backend("p2"), stack.backend("spare")
    client = _proxy_client(stack, [addr(p1.port), addr(p2.port), addr(spare.port, "backup")])

    results = _calls(client, 60)
    _assert_all_ok(results, stack)
    counts = _by_backend(results)
    assert counts["p1"] > 0 and counts["p2"] > 0, counts
    assert spare.events.count() == 0, "backup got calls while both primaries were up"

    p1.stop()
    time.sleep(0.5)
    results = _calls(client, 30)
    _assert_all_ok(results, stack)
    assert _by_backend(results) == Counter({"p2": 30})
    assert spare.events.count() == 0, "backup got calls while one primary was up"

    p2.stop()
    time.sleep(0.5)
    results = _calls(client, 40)
    _assert_all_ok(results, stack)
    assert _by_backend(results) == Counter({"spare": 40})


def test_down_server_never_gets_calls(stack: Stack) -> None:
    live, spare, marked = stack.backend("live"), stack.backend("spare"), stack.backend("marked")
    client = _proxy_client(
        stack, [addr(live.port), addr(spare.port, "backup"), addr(marked.port, "down")]
    )
    results = _calls(client, 50)
    _assert_all_ok(results, stack)
    assert _by_backend(results) == Counter({"live": 50})

    live.stop()  # even with the only primary gone, 'down' is not a fallback
    time.sleep(0.5)
    results = _calls(client, 30)
    _assert_all_ok(results, stack)
    assert _by_backend(results) == Counter({"spare": 30})
    assert marked.events.count() == 0, "a server marked down got calls"


@dataclass
class Sample:
    started: float
    ended: float
    result: Result


def test_backend_killed_under_load(stack: Stack) -> None:
    """Calls run on 8 threads for ~3 s; one backend is SIGKILLed half-way. Only
    calls in flight at that moment may fail; every call started 0.5 s after the
    kill succeeds, on the survivor."""
    a, b = stack.echo_process("a"), stack.echo_process("b")
    client = _proxy_client(
        stack,
        [
            addr(a.port, "max_fails=1 fail_timeout=30s"),
            addr(b.port, "max_fails=1 fail_timeout=30s"),
        ],
    )
    workers = 8
    samples: list[Sample] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 3.0

    def work() -> None:
        i = 0
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            r = client.unary(f"load {i}".encode(), [("x-sleep-ms", "20")], timeout=10)
            with lock:
                samples.append(Sample(t0, time.monotonic(), r))
            i += 1

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    killed_at = time.monotonic()
    a.kill()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "calls hung after the kill"

    before = [s for s in samples if s.ended < killed_at]
    assert Counter(s.result.backend for s in before if s.result.ok).keys() >= {"a", "b"}
    failed = [s for s in samples if not s.result.ok]
    assert len(failed) <= workers, f"{len(failed)} calls failed: {failed[:3]}"
    for s in failed:
        assert s.started < killed_at + 0.5, f"a call started after the kill failed: {s}"
        assert s.result.code == grpc.StatusCode.UNAVAILABLE, s
    late = [s for s in samples if s.started > killed_at + 0.5]
    assert len(late) >= 20, f"only {len(late)} calls after the kill"
    assert all(s.result.ok and s.result.backend == "b" for s in late), [
        s for s in late if not (s.result.ok and s.result.backend == "b")
    ][:3]


def _restart(stack: Stack, name: str, port: int, timeout: float = 5.0) -> EchoBackend:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return stack.backend(name, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_passive_health_skips_failed_server_until_fail_timeout(stack: Stack) -> None:
    """max_fails=1 fail_timeout=2s: a refused connect takes the server out for 2 s
    (even once it is back), then it gets calls again."""
    a, b = stack.backend("a"), stack.backend("b")
    params = "max_fails=1 fail_timeout=2s"
    client = _proxy_client(stack, [addr(a.port, params), addr(b.port, params)])
    results = _calls(client, 20)
    _assert_all_ok(results, stack)
    assert _by_backend(results).keys() == {"a", "b"}

    port = a.port
    a.stop()
    killed_at = time.monotonic()
    results = _calls(client, 10)  # one of these tries a, fails to connect, goes to b
    _assert_all_ok(results, stack)
    assert _by_backend(results) == Counter({"b": 10})
    failed_by = time.monotonic()

    a2 = _restart(stack, "a", port)  # back at once, but still within fail_timeout
    window: list[Result] = []
    while time.monotonic() < killed_at + 1.5:
        window += _calls(client, 5)
    _assert_all_ok(window, stack)
    assert window, "no time left in the fail_timeout window (machine too slow?)"
    assert a2.events.count() == 0, "the failed server got calls within fail_timeout"

    time.sleep(max(0.0, failed_by + 2.5 - time.monotonic()))
    results = _calls(client, 40)
    _assert_all_ok(results, stack)
    assert _by_backend(results)["a"] >= 5, _by_backend(results)
    assert a2.events.count() >= 5


def test_upstream_stream_limit_opens_more_connections(stack: Stack) -> None:
    """A backend that allows 10 concurrent streams per connection still takes
    40 concurrent calls: the proxy opens more connections (refused streams
    are retried), instead of failing or queueing without bound."""
    capped = stack.backend("capped", server_options=(("grpc.max_concurrent_streams", 10),))
    client = _proxy_client(stack, [addr(capped.port)])
    client.unary(b"warm-up", timeout=10)  # the proxy learns the limit from SETTINGS
    results = run_in_threads(
        lambda i: client.unary(b"slow %d" % i, [("x-sleep-ms", "400")], timeout=20), 40, 60
    )
    _assert_all_ok(results, stack)
    assert capped.peak_active > 10, capped.peak_active


def test_cold_start_waits_for_upstream_settings(stack: Stack) -> None:
    """Cold start: 40 calls arrive before the first upstream connection has
    the backend's SETTINGS (max 10 streams). The proxy opens streams only once
    it knows the limit, and spreads the rest over more connections; opening
    them blindly gets them reset (grpc-core: ENHANCE_YOUR_CALM)."""
    capped = stack.backend("capped", server_options=(("grpc.max_concurrent_streams", 10),))
    client = _proxy_client(stack, [addr(capped.port)])
    results = run_in_threads(
        lambda i: client.unary(b"slow %d" % i, [("x-sleep-ms", "300")], timeout=20), 40, 60
    )
    _assert_all_ok(results, stack)
