"""A small client for the proxy's admin listener in integration tests: GET
over HTTP/1.1, /metrics parsed with prometheus-client's text parser, bounded
polling, and two proxies sharing one metrics directory as a master's
workers do. Shared by the cross-feature tests (test_seams_*.py)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import (
    LOCALHOST,
    ProxyProcess,
    Stack,
    addr,
    free_ports,
    location,
    make_config,
    upstream,
)
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def admin_block(port: int) -> str:
    return f"admin {{ listen {LOCALHOST}:{port}; }}\n"


def get(port: int, path: str) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answers."""
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def status(port: int, path: str) -> int:
    return get(port, path)[0]


def upstreams(port: int) -> dict[str, dict[str, Any]]:
    """/upstreams as {pool name: pool}."""
    code, body = get(port, "/upstreams")
    assert code == 200, (code, body)
    return {p["name"]: p for p in json.loads(body)["upstreams"]}


def scrape(port: int) -> Samples:
    code, body = get(port, "/metrics")
    assert code == 200, (code, body[:200])
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        v
        for (n, k), v in samples.items()
        if n == name and all((lk, lv) in k for lk, lv in labels.items())
    )


def present(samples: Samples, name: str) -> bool:
    return any(n == name for n, _ in samples)


def wait_for(check: Callable[[], bool], timeout: float = 10.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def two_workers(
    stack: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[ProxyProcess], list[int]]:
    """Two proxies sharing one PROMETHEUS_MULTIPROC_DIR, as a master's workers
    do, each with its own admin port."""
    b1 = stack.backend("b1")
    shared = tmp_path / "metrics"
    shared.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    proxies, admins = [], []
    for _ in range(2):
        port, admin = free_ports(2)
        proxies.append(
            stack.proxy(
                make_config(
                    port,
                    [upstream("echo", [addr(b1.port)])],
                    [location("/echo.Echo/", "grpc_pass echo")],
                )
                + admin_block(admin)
            )
        )
        admins.append(admin)
    return proxies, admins
