"""Every balancing policy through the real proxy with real grpcio backends:
the distribution each promises, within tolerance, over a few thousand calls;
stickiness and consistent hashing's 1/N movement; least_conn, random two and
least_time steering away from a backend that sleeps 50 ms per call; subset
routing; max_conns under 100 concurrent calls."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

import grpc
from admin_client import admin_block, upstreams
from harness import (
    RawH2,
    Result,
    Stack,
    addr,
    free_port,
    free_ports,
    location,
    make_config,
    proxy_logs,
    run_in_threads,
    upstream,
)

from grpc_proxy_demo.echo import UNARY, EchoBackend


def _backend(stack: Stack, name: str, delay_ms: int = 0) -> EchoBackend:
    b = EchoBackend(name, delay_ms=delay_ms)
    b.start()
    stack.defer(b.stop)
    return b


def _proxy(stack: Stack, servers: Sequence[str], *directives: str) -> int:
    proxy = stack.proxy(
        make_config(
            free_port(),
            [upstream("echo", servers, "connect_timeout 2s", *directives)],
            [location("/", "grpc_pass echo")],
        )
    )
    return proxy.port


def _load(
    stack: Stack, port: int, calls: int, threads: int = 8, metadata: Sequence[tuple[str, str]] = ()
) -> list[Result]:
    """``calls`` unary calls on ``threads`` threads, each with its own channel."""
    clients = [stack.client(port) for _ in range(threads)]
    per = calls // threads

    def work(i: int) -> list[Result]:
        return [clients[i].unary(b"x", metadata, timeout=20) for _ in range(per)]

    return [r for rs in run_in_threads(work, threads, timeout=120) for r in rs]


def _counts(results: list[Result], stack: Stack) -> Counter[str | None]:
    bad = [r for r in results if not r.ok]
    assert not bad, f"{len(bad)} failed, e.g. {bad[0]}\n{proxy_logs(stack)}"
    return Counter(r.backend for r in results)


# ------------------------------------------------------------------- random


def test_random_follows_weights(stack: Stack) -> None:
    heavy, light = _backend(stack, "heavy"), _backend(stack, "light")
    port = _proxy(stack, [addr(heavy.port, "weight=3"), addr(light.port)], "random")
    counts = _counts(_load(stack, port, 2000), stack)
    assert 0.70 <= counts["heavy"] / 2000 <= 0.80, counts
    # random, not round robin: a run of sequential calls is not strictly alternating
    client = stack.client(port)
    seq = [client.unary(b"x").backend for _ in range(100)]
    assert (
        any(a == b == "light" for a, b in zip(seq, seq[1:], strict=False))
        or seq.count("light") != 25
    ), seq


# --------------------------------------------------------------- least_conn


def test_least_conn_ties_go_round_robin_by_weight(stack: Stack) -> None:
    a, b, c = _backend(stack, "a"), _backend(stack, "b"), _backend(stack, "c")
    port = _proxy(stack, [addr(a.port, "weight=2"), addr(b.port), addr(c.port)], "least_conn")
    client = stack.client(port)
    results = [client.unary(b"x") for _ in range(400)]  # sequential: always a tie
    assert _counts(results, stack) == {"a": 200, "b": 100, "c": 100}


def _steering(stack: Stack, method: str, delay_ms: int = 50) -> Counter[str | None]:
    fast1, fast2 = _backend(stack, "fast1"), _backend(stack, "fast2")
    slow = _backend(stack, "slow", delay_ms=delay_ms)
    port = _proxy(
        stack, [addr(fast1.port), addr(fast2.port), addr(slow.port)], *([method] if method else [])
    )
    return _counts(_load(stack, port, 2400, threads=12), stack)


def test_least_conn_steers_away_from_a_slow_backend(stack: Stack) -> None:
    counts = _steering(stack, "least_conn")
    assert counts["slow"] < 0.15 * 2400, counts  # round robin would give it 1/3


def test_random_two_least_conn_steers_away_from_a_slow_backend(stack: Stack) -> None:
    counts = _steering(stack, "random two least_conn")
    assert counts["slow"] < 0.15 * 2400, counts
    assert min(counts["fast1"], counts["fast2"]) > 0.3 * 2400, counts


def test_least_time_steers_away_from_a_slow_backend(stack: Stack) -> None:
    # In-process backends share the GIL with 12 client threads, so a fast
    # backend's latency jumps by tens of ms now and then, and a peak stays in
    # its average for ~2 s (DECAY). Against a 50 ms backend that left the slow
    # one 23-32% of the calls in 4 of 6 runs after the other steering tests
    # (round robin: 33%); 200 ms stays above those jumps.
    counts = _steering(stack, "least_time", delay_ms=200)
    assert counts["slow"] < 0.2 * 2400, counts
    # Latency leads the cost, and these backends' latencies jump with the GIL:
    # a peak on one fast backend leaves it out for a second or so (28% seen).
    assert min(counts["fast1"], counts["fast2"]) > 0.2 * 2400, counts


def test_round_robin_does_not_steer(stack: Stack) -> None:
    """The control for the steering tests: without a policy the slow backend
    gets its full third."""
    counts = _steering(stack, "")
    assert counts["slow"] == 800, counts


# ------------------------------------------------------------------ ip_hash


def _raw_call(port: int, source: str) -> str | None:
    with RawH2(port, source=source) as h:
        sid = h.grpc_request(UNARY, b"x")
        r = h.response(sid)
        return r.header("x-backend")


def test_ip_hash_sticks_per_slash_24_and_spreads_networks(stack: Stack) -> None:
    a, b, c = _backend(stack, "a"), _backend(stack, "b"), _backend(stack, "c")
    port = _proxy(stack, [addr(a.port), addr(b.port), addr(c.port)], "ip_hash")
    client = stack.client(port)
    assert len(_counts([client.unary(b"x") for _ in range(300)], stack)) == 1
    homes: dict[int, str | None] = {}
    for net in range(1, 121):
        homes[net] = _raw_call(port, f"127.0.{net}.1")
        assert _raw_call(port, f"127.0.{net}.77") == homes[net], net  # same /24
    spread = Counter(homes.values())
    assert set(spread) == {"a", "b", "c"} and min(spread.values()) >= 20, spread


def test_ip_hash_moves_away_from_an_unavailable_backend_and_back(stack: Stack) -> None:
    bs = {n: _backend(stack, n) for n in ("a", "b", "c")}
    port = _proxy(
        stack, [addr(b.port, "max_fails=1 fail_timeout=1s") for b in bs.values()], "ip_hash"
    )
    client = stack.client(port)
    home = client.unary(b"x").backend
    assert home is not None
    home_port = bs[home].port
    bs[home].stop()
    results = [client.unary(b"x", timeout=10) for _ in range(50)]
    moved = Counter(r.backend for r in results if r.ok)
    assert len(moved) == 1 and home not in moved, moved  # sticky on the fallback too
    revived = EchoBackend(home, home_port)
    revived.start()
    stack.defer(revived.stop)
    import time

    time.sleep(1.2)  # fail_timeout
    assert {client.unary(b"x").backend for _ in range(20)} == {home}


# --------------------------------------------------------------------- hash


def _users(stack: Stack, port: int, users: range) -> dict[int, str | None]:
    clients = [stack.client(port) for _ in range(8)]
    out: dict[int, str | None] = {}
    lock = threading.Lock()

    def work(i: int) -> None:
        for u in users[i::8]:
            r = clients[i].unary(b"x", [("x-user", f"user-{u}")], timeout=20)
            assert r.ok, r
            with lock:
                out[u] = r.backend

    run_in_threads(work, 8, timeout=120)
    return out


def test_hash_on_metadata_is_sticky_and_spread(stack: Stack) -> None:
    bs = [_backend(stack, n) for n in ("a", "b", "c")]
    port = _proxy(stack, [addr(b.port) for b in bs], "hash $http_x_user")
    first = _users(stack, port, range(1500))
    again = _users(stack, port, range(1500))
    assert first == again
    spread = Counter(first.values())
    assert min(spread.values()) > 350, spread


def test_consistent_hash_adding_a_backend_moves_about_one_in_n(stack: Stack) -> None:
    bs = [_backend(stack, f"b{i}") for i in range(5)]
    four = _proxy(stack, [addr(b.port) for b in bs[:4]], "hash $http_x_user consistent")
    five = _proxy(stack, [addr(b.port) for b in bs], "hash $http_x_user consistent")
    before = _users(stack, four, range(2000))
    after = _users(stack, five, range(2000))
    moved = [u for u in before if before[u] != after[u]]
    assert all(after[u] == "b4" for u in moved), "a key moved between two old backends"
    assert 0.12 <= len(moved) / 2000 <= 0.28, len(moved)  # about 1/5
    assert Counter(after.values())["b4"] == len(moved)


# ------------------------------------------------------------------- subset


def test_subset_routes_by_version_metadata(stack: Stack) -> None:
    v1a, v1b, v2 = _backend(stack, "v1a"), _backend(stack, "v1b"), _backend(stack, "v2")
    servers = [
        addr(v1a.port, "meta=version:v1"),
        addr(v1b.port, "meta=version:v1,zone:b"),
        addr(v2.port, "meta=version:v2"),
    ]
    port = _proxy(stack, servers, "subset version", "least_conn")
    assert _counts(_load(stack, port, 800, metadata=[("version", "v1")]), stack).keys() == {
        "v1a",
        "v1b",
    }
    assert _counts(_load(stack, port, 200, metadata=[("version", "v2")]), stack) == {"v2": 200}
    assert _counts(_load(stack, port, 320), stack).keys() == {"v1a", "v1b", "v2"}
    r = stack.client(port).unary(b"x", [("version", "v3")])
    assert r.code == grpc.StatusCode.UNAVAILABLE
    assert r.details == "no upstream endpoint matches version=v3"
    assert v1a.events.count() + v1b.events.count() + v2.events.count() == 1320


def test_subset_fallback_any_sends_unmatched_calls_to_all(stack: Stack) -> None:
    v1, v2 = _backend(stack, "v1"), _backend(stack, "v2")
    port = _proxy(
        stack,
        [addr(v1.port, "meta=version:v1"), addr(v2.port, "meta=version:v2")],
        "subset version",
        "subset_fallback any",
    )
    counts = _counts(_load(stack, port, 200, metadata=[("version", "v3")]), stack)
    assert counts == {"v1": 100, "v2": 100}
    assert _counts(_load(stack, port, 80, metadata=[("version", "v2")]), stack) == {"v2": 80}


# ---------------------------------------------------------------- max_conns


def test_max_conns_cap_holds_under_100_concurrent_calls(stack: Stack) -> None:
    a, b = _backend(stack, "a"), _backend(stack, "b")
    port = _proxy(
        stack, [addr(a.port, "max_conns=5"), addr(b.port, "max_conns=3")], "queue_timeout 20s"
    )
    clients = [stack.client(port) for _ in range(10)]

    def work(i: int) -> Result:
        return clients[i % 10].unary(b"x", [("x-sleep-ms", "50")], timeout=30)

    results = run_in_threads(work, 100, timeout=60)
    assert _counts(results, stack).total() == 100
    assert a.peak_active <= 5 and b.peak_active <= 3, (a.peak_active, b.peak_active)
    assert a.peak_active == 5 and b.peak_active == 3  # the caps were reached, not avoided


def test_max_conns_without_queue_answers_unavailable(stack: Stack) -> None:
    a = _backend(stack, "a")
    port = _proxy(stack, [addr(a.port, "max_conns=2")])
    clients = [stack.client(port) for _ in range(10)]

    def work(i: int) -> Result:
        return clients[i % 10].unary(b"x", [("x-sleep-ms", "300")], timeout=30)

    results = run_in_threads(work, 30, timeout=60)
    ok = [r for r in results if r.ok]
    refused = [r for r in results if r.code == grpc.StatusCode.UNAVAILABLE]
    assert len(ok) + len(refused) == 30 and len(ok) >= 2 and refused, Counter(
        r.code for r in results
    )
    assert refused[0].details == "every endpoint of echo is at max_conns"
    assert a.peak_active <= 2


def test_upstreams_endpoint_shows_each_configured_method(stack: Stack) -> None:
    """/upstreams used to say round_robin whatever the method."""
    methods = {
        "rr": "",
        "lc": "least_conn",
        "rnd": "random",
        "p2c": "random two",
        "iph": "ip_hash",
        "ch": "hash $grpc_method consistent",
        "lt": "least_time",
    }
    port, admin = free_ports(2)
    ups = [upstream(name, [addr(50999)], *([m] if m else [])) for name, m in methods.items()]
    locs = [location(f"/{name}.S/", f"grpc_pass {name}") for name in methods]
    locs.append(location("/direct.S/", "grpc_pass 127.0.0.1:50998"))
    stack.proxy(make_config(port, ups, locs) + admin_block(admin))
    pools = upstreams(admin)
    shown = {name: pools[name]["policy"] for name in methods}
    assert shown == {name: m or "round_robin" for name, m in methods.items()}
    direct = [p for name, p in pools.items() if name not in methods]
    assert [p["policy"] for p in direct] == ["round_robin"]
