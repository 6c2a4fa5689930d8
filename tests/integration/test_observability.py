"""Metrics, admin endpoints and access logs of the real proxy: real grpcio
calls through it, /metrics scraped over HTTP and parsed with
prometheus-client's parser, access log files read back."""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from admin_client import Samples, admin_block, total, two_workers, wait_for
from harness import (
    LOCALHOST,
    RawH2,
    RequestQueue,
    Stack,
    addr,
    free_port,
    free_ports,
    location,
    make_config,
    proxy_logs,
    upstream,
)
from prometheus_client.parser import text_string_to_metric_families

from grpc_proxy_demo.echo import subprocess_env

# --------------------------------------------------------------------------- helpers


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def scrape(port: int) -> Samples:
    status, headers, body = get(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    }


def values(samples: Samples, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of ``name`` whose labels include ``labels``."""
    return {
        k: v
        for (n, k), v in samples.items()
        if n == name and all((lk, lv) in k for lk, lv in labels.items())
    }


def wait_lines(path: Path, n: int, timeout: float = 10.0) -> list[str]:
    def lines() -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    wait_for(lambda: len(lines()) >= n, timeout)
    return lines()


UNARY = "/echo.Echo/Unary"
COMBINED = re.compile(
    r'(?P<ip>\S+) - - \[[^\]]+\] "POST (?P<path>\S+) HTTP/2\.0" (?P<http>\d+) \d+ "-" "[^"]*" '
    r"(?P<status>\d+) (?P<code>[A-Z_]+) (?P<endpoint>\S+) (?P<secs>[\d.]+) (?P<rqb>\d+) "
    r'(?P<rsb>\d+) (?P<rqm>\d+) (?P<rsm>\d+) "(?P<error>[^"]*)"'
)


# --------------------------------------------------------------------------- tests


def test_counters_histograms_messages_and_access_log_match_the_calls(
    stack: Stack, tmp_path: Path
) -> None:
    b1 = stack.backend("b1")
    dead = free_port()
    port, admin = free_ports(2)
    log_path = tmp_path / "access.log"
    config = make_config(
        port,
        [upstream("echo", [addr(b1.port)]), upstream("dead", [addr(dead)], "connect_timeout 2s")],
        [location("/echo.Echo/", "grpc_pass echo"), location("/dead.Svc/", "grpc_pass dead")],
        server_directives=[f"access_log {log_path}"],
    ) + admin_block(admin)
    proxy = stack.proxy(config)
    client = stack.client(proxy.port)
    expected: list[tuple[str, str]] = []  # (path, code) per call, in order
    for i in range(5):
        assert client.unary(f"ok {i}".encode()).ok
        expected.append((UNARY, "OK"))
    for _ in range(3):
        assert client.unary(b"x", metadata=[("x-status", "5")]).code.name == "NOT_FOUND"
        expected.append((UNARY, "NOT_FOUND"))
    for _ in range(2):
        assert client.unary(b"x", path="/dead.Svc/Call").code.name == "UNAVAILABLE"
        expected.append(("/dead.Svc/Call", "UNAVAILABLE"))
    for _ in range(2):
        assert client.unary(b"x", path="/nowhere.Svc/Call").code.name == "UNIMPLEMENTED"
        expected.append(("/nowhere.Svc/Call", "UNIMPLEMENTED"))
    r = client.server_stream(b"abc", metadata=[("x-count", "4")])
    assert r.ok and r.count == 4
    expected.append(("/echo.Echo/ServerStream", "OK"))
    assert client.client_stream([b"1", b"22", b"333"]).ok
    expected.append(("/echo.Echo/ClientStream", "OK"))

    m = scrape(admin)
    req = "grpc_proxy_requests_total"
    echo = {"service": "echo.Echo", "upstream": "echo"}
    assert total(m, req, method="Unary", code="OK", **echo) == 5
    assert total(m, req, method="Unary", code="NOT_FOUND", **echo) == 3
    assert (
        total(m, req, service="dead.Svc", method="Call", upstream="dead", code="UNAVAILABLE") == 2
    )
    assert total(m, req, service="unknown", method="unknown", code="UNIMPLEMENTED") == 2
    assert total(m, req, method="ServerStream", code="OK") == 1
    assert total(m, req, method="ClientStream", code="OK") == 1
    assert total(m, req) == len(expected)
    dur = "grpc_proxy_request_duration_seconds_count"
    assert total(m, dur, method="Unary", **echo) == 8
    assert total(m, dur) == len(expected)
    assert total(m, "grpc_proxy_request_duration_seconds_bucket", method="Unary", le="+Inf") == 8
    msgs = "grpc_proxy_messages_total"
    assert total(m, msgs, method="ServerStream", direction="response") == 4
    assert total(m, msgs, method="ClientStream", direction="request") == 3
    assert total(m, msgs, method="Unary", direction="request") == 8
    assert total(m, msgs, method="Unary", direction="response") == 5
    assert total(m, "grpc_proxy_bytes_total", direction="request") > 0
    ep = {"upstream": "echo", "endpoint": f"{LOCALHOST}:{b1.port}"}
    assert total(m, "grpc_proxy_upstream_requests_total", code="OK", **ep) == 7
    # The first dead call failed to connect and took the endpoint out (max_fails=1):
    # the second found no endpoint to try.
    assert total(m, "grpc_proxy_upstream_requests_total", code="UNAVAILABLE", upstream="dead") == 1
    assert total(m, "grpc_proxy_active_streams", upstream="echo") == 0
    assert total(m, "grpc_proxy_downstream_connections") >= 1
    assert total(m, "grpc_proxy_upstream_connections", **ep) == 1
    assert total(m, "grpc_proxy_endpoint_healthy", **ep) == 1
    assert total(m, "grpc_proxy_endpoint_healthy", upstream="dead") == 0

    lines = wait_lines(log_path, len(expected))
    assert len(lines) == len(expected), lines
    parsed = [COMBINED.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [(p["path"], p["code"]) for p in parsed] == expected  # type: ignore[index]
    first = parsed[0]
    assert first is not None
    assert (
        first["ip"],
        first["status"],
        first["endpoint"],
        first["rqm"],
        first["rsm"],
        first["error"],
    ) == (LOCALHOST, "0", f"{LOCALHOST}:{b1.port}", "1", "1", "-")
    dead_line = parsed[8]
    assert dead_line is not None and dead_line["endpoint"] == f"{LOCALHOST}:{dead}"
    assert dead_line["error"].startswith(f"upstream connect error: {LOCALHOST}:{dead}")
    second = parsed[9]
    assert second is not None and (second["endpoint"], second["error"]) == (
        "-",
        "no healthy upstream in dead",
    )


def test_active_streams_count_an_open_stream_and_return_to_zero(stack: Stack) -> None:
    b1 = stack.backend("b1")
    port, admin = free_ports(2)
    proxy = stack.proxy(
        make_config(
            port, [upstream("echo", [addr(b1.port)])], [location("/echo.Echo/", "grpc_pass echo")]
        )
        + admin_block(admin)
    )
    client = stack.client(proxy.port)
    q = RequestQueue(idle_limit=20)
    got: list[bytes] = []
    done: list[object] = []
    import threading

    def run() -> None:
        done.append(client.bidi(q, on_message=lambda i, msg: got.append(msg)))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        q.put(b"ping")
        assert wait_for(lambda: bool(got)), proxy_logs(stack)
        m = scrape(admin)
        assert total(m, "grpc_proxy_active_streams", upstream="echo") == 1
    finally:
        q.close()
        t.join(20)
    assert done and getattr(done[0], "ok", False)
    assert wait_for(lambda: total(scrape(admin), "grpc_proxy_active_streams", upstream="echo") == 0)
    m = scrape(admin)
    assert total(m, "grpc_proxy_requests_total", method="Bidi", code="OK") == 1


def test_endpoint_health_follows_a_stopped_backend(stack: Stack, tmp_path: Path) -> None:
    b1, b2 = stack.backend("b1"), stack.backend("b2")
    port, admin = free_ports(2)
    log_path = tmp_path / "access.json"
    config = (
        make_config(
            port,
            [
                upstream(
                    "echo",
                    [addr(b1.port, "fail_timeout=60s"), addr(b2.port, "fail_timeout=60s")],
                    "connect_timeout 2s",
                )
            ],
            [location("/echo.Echo/", "grpc_pass echo")],
        )
        + admin_block(admin)
        + f"access_log {log_path} json;\n"
    )
    proxy = stack.proxy(config)
    client = stack.client(proxy.port)
    for _ in range(4):
        assert client.unary(b"x").ok
    healthy = "grpc_proxy_endpoint_healthy"
    e1 = {"upstream": "echo", "endpoint": f"{LOCALHOST}:{b1.port}"}
    e2 = {"upstream": "echo", "endpoint": f"{LOCALHOST}:{b2.port}"}
    m = scrape(admin)
    assert (total(m, healthy, **e1), total(m, healthy, **e2)) == (1, 1)
    b2.stop()
    results = [client.unary(b"x") for _ in range(4)]
    assert all(r.ok and r.backend == "b1" for r in results), results
    m = scrape(admin)
    assert (total(m, healthy, **e1), total(m, healthy, **e2)) == (1, 0)
    assert total(m, "grpc_proxy_upstream_retries_total", upstream="echo") >= 1
    assert total(m, "grpc_proxy_upstream_connections", **e2) == 0
    (pool,) = json.loads(get(admin, "/upstreams")[2])["upstreams"]
    by_addr = {e["address"]: e for e in pool["endpoints"]}
    assert by_addr[e2["endpoint"]]["healthy"] is False
    assert by_addr[e2["endpoint"]]["fails"] == 1
    lines = wait_lines(log_path, 8)
    records = [json.loads(line) for line in lines]
    assert len(records) == 8
    assert all(
        r["code"] == "OK" and r["grpc_status"] == 0 and r["http_status"] == 200 for r in records
    ), records
    assert {r["endpoint"] for r in records[4:]} == {e1["endpoint"]}
    assert all(
        r["path"] == UNARY
        and r["request_messages"] == 1
        and r["response_messages"] == 1
        and r["client"].startswith(LOCALHOST + ":")
        for r in records
    )


def test_admin_endpoints(stack: Stack) -> None:
    b1 = stack.backend("b1")
    port, admin, other, gone = free_ports(4)
    proxy = stack.proxy(
        make_config(
            port,
            [
                upstream(
                    "api",
                    [
                        addr(b1.port, "weight=3", "meta=zone:a,tier:gold"),
                        addr(other, "backup"),
                        addr(gone, "down"),
                    ],
                )
            ],
            [location("/", "grpc_pass api")],
        )
        + admin_block(admin)
    )
    assert stack.client(proxy.port).unary(b"x").ok
    assert get(admin, "/healthz")[:1] == (200,)
    assert get(admin, "/readyz")[0] == 200
    assert get(admin, "/nope")[0] == 404
    status, headers, _ = get(admin, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET"
    status, headers, body = get(admin, "/upstreams")
    assert status == 200 and headers["content-type"] == "application/json"
    (pool,) = json.loads(body)["upstreams"]
    assert (pool["name"], pool["source"], pool["policy"]) == ("api", "static", "round_robin")
    eps = {e["address"]: e for e in pool["endpoints"]}
    assert len(eps) == 3
    first = eps[f"{LOCALHOST}:{b1.port}"]
    assert (
        first["weight"],
        first["labels"],
        first["backup"],
        first["down"],
        first["healthy"],
        first["active"],
        first["fails"],
        first["connections"],
        first["source"],
    ) == (3, {"zone": "a", "tier": "gold"}, False, False, True, 0, 0, 1, "static")
    backup, down = eps[f"{LOCALHOST}:{other}"], eps[f"{LOCALHOST}:{gone}"]
    assert backup["backup"] is True and down["down"] is True and down["healthy"] is False
    # A client that sends garbage, or nothing, gets an error or is dropped;
    # the admin listener keeps serving.
    with socket.create_connection((LOCALHOST, admin), timeout=5) as s:
        s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection((LOCALHOST, admin), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 40000)
        reply = s.recv(100)
        assert reply.startswith(b"HTTP/1.1 431") or reply == b""
    assert get(admin, "/healthz")[0] == 200


def test_many_unknown_methods_leave_the_series_bounded(stack: Stack) -> None:
    b1 = stack.backend("b1")
    port, admin = free_ports(2)
    proxy = stack.proxy(
        make_config(
            port,
            [upstream("echo", [addr(b1.port)])],
            [location("/echo.Echo/", "grpc_pass echo"), location("/open.", "grpc_pass echo")],
        )
        + "metrics_max_methods 100;\n"
        + admin_block(admin)
    )
    rnd = random.Random(6)
    calls = 10_000
    with RawH2(proxy.port, timeout=10) as h2c:
        for start in range(0, calls, 200):
            sids = []
            for i in range(start, start + 200):
                # Half routed to a catch-all location (a new service each), half unrouted.
                prefix = "/open." if i % 2 else "/x"
                sids.append(h2c.grpc_request(f"{prefix}S{rnd.getrandbits(40)}/M{i}"))
            for sid in sids:
                r = h2c.response(sid, timeout=10)
                assert r.ended and (r.trailer("grpc-status") or r.header("grpc-status")) == "12", (
                    r,
                    proxy_logs(stack),
                )
                del h2c.responses[sid]
    m = scrape(admin)
    req = values(m, "grpc_proxy_requests_total")
    assert sum(req.values()) == calls
    assert total(m, "grpc_proxy_requests_total", service="unknown", method="unknown") == calls / 2
    assert total(m, "grpc_proxy_requests_total", service="other", method="other") == calls / 2 - 100
    assert len(req) <= 102, len(req)  # 100 admitted pairs, other/other, unknown/unknown
    assert len(m) < 3000, len(m)  # every family together, histograms included


def test_two_processes_share_one_scrape(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes (issue 5's master sets PROMETHEUS_MULTIPROC_DIR for
    them): each scrape merges every process's series."""
    proxies, admins = two_workers(stack, tmp_path, monkeypatch)
    for proxy, n in zip(proxies, (3, 4), strict=True):
        client = stack.client(proxy.port)
        for _ in range(n):
            assert client.unary(b"x").ok
    for admin in admins:
        assert wait_for(
            lambda a=admin: (
                total(scrape(a), "grpc_proxy_requests_total", method="Unary", code="OK") == 7
            )
        ), (scrape(admin), proxy_logs(stack))
        m = scrape(admin)
        assert total(m, "grpc_proxy_request_duration_seconds_count", method="Unary") == 7
        assert total(m, "grpc_proxy_downstream_connections") == 2
        assert total(m, "grpc_proxy_upstream_connections", upstream="echo") == 2
        assert total(m, "grpc_proxy_endpoint_healthy", upstream="echo") == 1  # min, not a sum
    assert len({p.pid for p in proxies}) == 2
    assert len(list((tmp_path / "metrics").glob("counter_*.db"))) == 2


def test_startup_refused_for_admin_port_clash_unwritable_log_and_busy_admin_port(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = make_config(
        port, [upstream("echo", [addr(free_port())])], [location("/", "grpc_pass echo")]
    )

    def run(config: str, *args: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "p.conf"
        path.write_text(config)
        return subprocess.run(
            [sys.executable, "-m", "proxy", "-c", str(path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=subprocess_env(),
        )

    r = run(base + f"admin {{ listen {port}; }}\n", "-t")
    lines = base.count("\n")
    listen_line = base.splitlines().index(f"    listen {LOCALHOST}:{port} http2;") + 1
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"{tmp_path}/p.conf:{lines + 1}: admin listen "
        f"127.0.0.1:{port} shares port {port} with the server listen "
        f"at {tmp_path}/p.conf:{listen_line}"
    )
    r = run(base + "access_log /nonexistent-dir/a.log;\n")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f'p.conf:{lines + 1}: cannot open access log "/nonexistent-dir/a.log"' in r.stderr
    with socket.socket() as busy:
        busy.bind((LOCALHOST, 0))
        busy.listen(1)
        admin = busy.getsockname()[1]
        r = run(base + admin_block(admin))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"cannot listen on 127.0.0.1:{admin} for admin" in r.stderr


def test_a_dead_workers_gauges_leave_the_merged_scrape(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the master does when a worker exits (``worker_exited``): the
    worker's live gauges go, its counters stay."""
    from proxy.metrics.export import worker_exited

    proxies, admins = two_workers(stack, tmp_path, monkeypatch)
    for proxy in proxies:
        assert stack.client(proxy.port).unary(b"x").ok
    assert wait_for(lambda: total(scrape(admins[0]), "grpc_proxy_requests_total") == 2)
    assert wait_for(lambda: total(scrape(admins[0]), "grpc_proxy_upstream_connections") == 2)
    gone = proxies[1]
    gone.stop()
    worker_exited(gone.pid)
    m = scrape(admins[0])
    assert total(m, "grpc_proxy_upstream_connections") == 1
    assert total(m, "grpc_proxy_requests_total") == 2
