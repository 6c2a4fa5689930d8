"""The status page's JSON without sockets: endpoint states, policies and
sources from a parsed config, etcd feeds, merging the snapshots of several
workers, the call rows, the board's shared snapshot files (a temp dir, a
hand-moved clock), the admin routes, and the page template."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from proxy.admin import status, status_board, status_page
from proxy.admin.handlers import AdminHandlers
from proxy.admin.status_board import StatusBoard
from proxy.balancing.pool import build_pools
from proxy.config import parse_string
from proxy.config.model import Address
from proxy.metrics.rates import MethodRate
from proxy.metrics.sources import Sources
from proxy.relay.relay import Relay

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
upstream api {
    least_conn;
    server 127.0.0.1:5001 weight=3 meta=zone:a;
    server 127.0.0.1:5002 backup;
    server 127.0.0.1:5003 down;
    health_check;
}
upstream disc {
    hash $grpc_method consistent;
    etcd http://127.0.0.1:2379 prefix=/services/disc/;
}
upstream mixed {
    random two;
    server 127.0.0.1:5009;
    etcd http://127.0.0.1:2379 prefix=/services/mixed/;
    subset version;
}
admin { listen 9901; }
server {
    listen 127.0.0.1:8080;
    location /api.V1/ { grpc_pass api; }
    location = /disc.Svc/Get { grpc_pass disc; }
    location /raw/ { grpc_pass grpc://127.0.0.1:7000; }
}
"""

NOW = 100.0


def setup(**providers: Any) -> tuple[Any, Sources]:
    config = parse_string(CONFIG, "t.conf")
    relay = Relay(build_pools(config.upstreams, {}), lambda: NOW)
    sources = Sources(relay, config=lambda: config, **providers)
    sources.listening = True
    return config, sources


def feed(**kw: Any) -> SimpleNamespace:
    base = dict(
        connected=True,
        synced_once=True,
        revision=42,
        events_applied=5,
        resyncs=1,
        last_message_at=99.5,
        endpoints=1,
        url="http://127.0.0.1:2379",
    )
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("", "round_robin"),
        ("least_conn;", "least_conn"),
        ("random;", "random"),
        ("random two;", "random two"),
        ("random two least_conn;", "random two"),
        ("ip_hash;", "ip_hash"),
        ("hash $remote_addr;", "hash $remote_addr"),
        ("hash $http_x_user consistent;", "hash $http_x_user consistent"),
        ("least_time header;", "least_time"),
    ],
)
def test_policy_is_the_configured_method(line: str, name: str) -> None:
    config = parse_string(
        f"upstream u {{ {line} server 127.0.0.1:1; }}\n"
        "server { listen 1; location / { grpc_pass u; } }\n",
        "t",
    )
    assert status.policy_name(config.upstreams["u"].balance) == name


def test_endpoint_states() -> None:
    config, sources = setup()
    ok, down, backup = sources.relay.pools["api"].endpoints  # primaries, then backups
    assert status.endpoint_state(ok, NOW) == ("up", "")
    assert status.endpoint_state(down, NOW) == ("down", "marked down")
    backup.record_failure(NOW - 4)  # max_fails=1, fail_timeout=10s
    assert status.endpoint_state(backup, NOW) == ("failed", "1 failed, retried in 6s")
    assert status.endpoint_state(backup, NOW + 10)[0] == "up"
    ok.state.healthy = False
    assert status.endpoint_state(ok, NOW) == ("failed", "health check failing")


def test_local_snapshot_from_the_config_and_live_state() -> None:
    config, sources = setup()
    pools = sources.relay.pools
    pools["api"].endpoints[0].state.active = 2
    snap = status.local_snapshot(
        pools,
        config.upstreams,
        {"disc": feed(), "mixed": feed(connected=False, last_message_at=None)},
        {Address("127.0.0.1", 5001): 3},
        NOW,
        pid=7,
    )
    assert snap["pid"] == 7
    ups = {u["name"]: u for u in snap["upstreams"]}
    assert list(ups) == ["api", "disc", "mixed", "127.0.0.1:7000"]
    api = ups["api"]
    assert (api["policy"], api["source"], api["health_check"], api["subset"], api["etcd"]) == (
        "least_conn",
        "static",
        True,
        None,
        [],
    )
    first, down, backup = api["endpoints"]
    assert first == {
        "address": "127.0.0.1:5001",
        "state": "up",
        "reason": "",
        "active": 2,
        "fails": 0,
        "connections": 3,
        "weight": 3,
        "backup": False,
        "source": "static",
        "labels": {"zone": "a"},
        "failed_in": 0,
    }
    assert backup["backup"] is True and down["state"] == "down"
    disc = ups["disc"]
    assert (disc["policy"], disc["source"], disc["endpoints"]) == (
        "hash $grpc_method consistent",
        "etcd",
        [],
    )
    assert disc["etcd"] == [
        {
            "pid": 7,
            "url": "http://127.0.0.1:2379",
            "connected": True,
            "synced_once": True,
            "revision": 42,
            "events_applied": 5,
            "resyncs": 1,
            "endpoints": 1,
            "seconds_since_last_message": 0.5,
        }
    ]
    mixed = ups["mixed"]
    assert (mixed["policy"], mixed["source"], mixed["subset"]) == (
        "random two",
        "static + etcd",
        "version",
    )
    assert mixed["etcd"][0]["connected"] is False
    assert mixed["etcd"][0]["seconds_since_last_message"] is None
    raw = ups["127.0.0.1:7000"]
    assert (raw["implicit"], raw["policy"], raw["source"]) == (True, "round_robin", "static")


def test_without_a_config_the_pool_says_policy_and_source() -> None:
    config, sources = setup()
    pools = sources.relay.pools
    mixed = pools["mixed"]
    etcd_fed = dataclasses.replace(mixed.primaries[0], source="etcd")
    pools["mixed"] = dataclasses.replace(mixed, primaries=(etcd_fed, *mixed.primaries[1:]))
    snap = status.local_snapshot(pools, {}, {"disc": feed()}, {}, NOW, pid=1)
    ups = {u["name"]: u for u in snap["upstreams"]}
    assert (ups["api"]["policy"], ups["api"]["source"]) == ("least_conn", "static")
    assert ups["disc"]["source"] == "etcd" and ups["mixed"]["source"] == "etcd"


def _snap(pid: int, endpoints: list[dict[str, Any]], feeds: int = 0) -> dict[str, Any]:
    return {
        "pid": pid,
        "upstreams": [
            {
                "name": "u",
                "policy": "least_conn",
                "source": "etcd",
                "implicit": False,
                "subset": None,
                "health_check": False,
                "endpoints": endpoints,
                "etcd": [{"pid": pid, "connected": True}] * feeds,
            }
        ],
    }


def _ep(address: str, state: str = "up", **kw: Any) -> dict[str, Any]:
    ep = {
        "address": address,
        "state": state,
        "reason": "" if state == "up" else state,
        "active": 0,
        "fails": 0,
        "connections": 0,
        "weight": 1,
        "backup": False,
        "source": "etcd",
        "labels": {},
        "failed_in": int(state == "failed"),
    }
    ep.update(kw)
    return ep


def test_merging_workers_sums_and_the_worse_state_wins() -> None:
    a = _snap(1, [_ep("h:1", active=2, connections=1), _ep("h:2", fails=1)], feeds=1)
    b = _snap(
        2,
        [_ep("h:2", "failed", fails=2, active=1), _ep("h:1", active=3, connections=1), _ep("h:3")],
        feeds=1,
    )
    c = _snap(3, [_ep("h:1", connections=1)], feeds=1)
    (pool,) = status.merge_snapshots([a, b, c])
    eps = {e["address"]: e for e in pool["endpoints"]}
    assert [e["address"] for e in pool["endpoints"]] == ["h:1", "h:2", "h:3"]
    assert (eps["h:1"]["active"], eps["h:1"]["connections"], eps["h:1"]["state"]) == (5, 3, "up")
    assert (
        eps["h:2"]["state"],
        eps["h:2"]["reason"],
        eps["h:2"]["fails"],
        eps["h:2"]["failed_in"],
    ) == ("failed", "failed", 3, 1)
    assert [f["pid"] for f in pool["etcd"]] == [1, 2, 3]
    assert (pool["up"], pool["active"]) == (2, 6)
    assert a["upstreams"][0]["endpoints"][0]["active"] == 2  # inputs untouched
    (alone,) = status.merge_snapshots([a])
    assert (alone["up"], alone["active"]) == (2, 2)
    assert status.merge_snapshots([]) == []


def test_listeners_and_routes() -> None:
    config, _ = setup()
    assert status.listeners(config) == [
        {
            "addresses": ["127.0.0.1:8080"],
            "tls": False,
            "routes": [
                {"path": "/api.V1/", "upstream": "api"},
                {"path": "= /disc.Svc/Get", "upstream": "disc"},
                {"path": "/raw/", "upstream": "127.0.0.1:7000"},
            ],
        }
    ]
    assert status.listeners(None) == []


def test_calls_part_rounds_limits_and_totals() -> None:
    rows = [
        MethodRate("s", "A", "u", calls=30, errors=3, total=100, codes={"OK": 27, "INTERNAL": 3}),
        MethodRate("s", "B", "u", calls=10, errors=0, total=10, codes={"OK": 10}),
        MethodRate("s", "C", "u", total=5),
    ]
    part = status.calls(rows, 60.0, 60.0, limit=2)
    assert (part["span"], part["seconds"], part["calls"], part["omitted"]) == (60.0, 60.0, 40, 1)
    assert part["per_second"] == 0.667 and part["error_ratio"] == 0.075
    a, b = part["methods"]
    assert a == {
        "service": "s",
        "method": "A",
        "upstream": "u",
        "per_second": 0.5,
        "error_ratio": 0.1,
        "calls": 30,
        "errors": 3,
        "total": 100,
        "codes": {"OK": 27, "INTERNAL": 3},
    }
    assert b["error_ratio"] == 0.0
    empty = status.calls([], 0.0, 60.0)
    assert (empty["per_second"], empty["error_ratio"], empty["methods"]) == (0.0, 0.0, [])


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_board_rates_from_sampled_counters() -> None:
    config, sources = setup()
    counts = {("api.V1", "Get", "api", "OK"): 0.0}
    clock = Clock()
    board = StatusBoard(sources, lambda: dict(counts), pid=11, clock=clock, wall=lambda: 5.0)
    board.sample()
    clock.t += 30
    counts[("api.V1", "Get", "api", "OK")] = 57.0
    counts[("api.V1", "Get", "api", "UNAVAILABLE")] = 3.0
    doc = board.document(board.capture(), None, False)  # samples at 1030
    assert (doc["pid"], doc["workers"], doc["time"], doc["ready"], doc["admin"]) == (
        11,
        1,
        5.0,
        True,
        "127.0.0.1:9901",
    )
    (row,) = doc["calls"]["methods"]
    assert (row["per_second"], row["error_ratio"], row["calls"]) == (2.0, 0.05, 60)
    assert doc["calls"]["seconds"] == 30.0
    assert [u["name"] for u in doc["upstreams"]] == ["api", "disc", "mixed", "127.0.0.1:7000"]
    assert board.document(board.capture(), "draining", True)["not_ready"] == "draining"


def test_board_shares_snapshots_between_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, sources = setup()
    wall = Clock(5000.0)
    me = StatusBoard(sources, dict, share_dir=str(tmp_path), pid=1, wall=wall)
    peer = StatusBoard(sources, dict, share_dir=str(tmp_path), pid=2, wall=wall)
    dead = StatusBoard(sources, dict, share_dir=str(tmp_path), pid=3, wall=wall)
    monkeypatch.setattr(status_board, "_alive", lambda pid: pid != 3)
    sources.relay.pools["api"].endpoints[0].state.active = 1
    for board in (me, peer, dead):
        board.publish(board.capture())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "status_1.json",
        "status_2.json",
        "status_3.json",
    ]
    (tmp_path / "status_x.json").write_text("{}")
    (tmp_path / "status_4.json").write_text("not json")
    os.utime(tmp_path / "status_2.json", (wall.t, wall.t))
    peers = me.peers()
    assert [p["pid"] for p in peers] == [2]  # not itself, not the dead one, not garbage
    doc = me.document(me.capture(), None, False)
    assert doc["workers"] == 2
    api = doc["upstreams"][0]
    assert api["endpoints"][0]["active"] == 2 and api["active"] == 2
    wall.t += status_board.STALE + 1  # a file nobody has rewritten: not a live worker
    assert me.peers() == []
    peer.withdraw()
    status_board.remove_snapshot(str(tmp_path), 3)
    status_board.remove_snapshot(str(tmp_path), 3)  # twice: no error
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "status_1.json",
        "status_4.json",
        "status_x.json",
    ]
    StatusBoard(sources, dict).publish({})  # one process: no directory, nothing written


def _handlers(board: StatusBoard | None) -> AdminHandlers:
    return AdminHandlers(
        board.sources if board else setup()[1], lambda: (b"m 1\n", "text/plain"), board
    )


def test_admin_routes_for_the_page_and_its_json() -> None:
    config, sources = setup(draining=lambda: True)
    board = StatusBoard(sources, dict, pid=5, wall=lambda: 1.0)
    h = _handlers(board)
    for path in ("/", "/status.json", "/status.json?t=1"):
        assert h.route("GET", path) is None
        r = h.route("POST", path)
        assert r is not None and r.status == 405
    r = h.prepare("/status.json")()
    assert (r.status, r.content_type) == (200, "application/json")
    assert ("Cache-Control", "no-store") in r.headers
    doc = json.loads(r.body)
    assert (doc["pid"], doc["draining"], doc["ready"], doc["not_ready"]) == (
        5,
        True,
        False,
        "draining",
    )
    page = h.prepare("/")()
    assert (page.status, page.content_type) == (200, "text/html; charset=utf-8")
    assert any(k == "Content-Security-Policy" for k, _ in page.headers)
    assert b'"pid":5' in page.body
    assert h.prepare("/metrics")().body == b"m 1\n"
    without = _handlers(None)
    assert without.route("GET", "/").status == 404  # type: ignore[union-attr]
    assert without.route("GET", "/status.json").status == 404  # type: ignore[union-attr]


def test_a_failing_status_is_a_500_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    config, sources = setup()

    def broken() -> dict[Any, float]:
        raise OSError("no such file")

    h = _handlers(StatusBoard(sources, broken))
    r = h.prepare("/status.json")()
    assert r.status == 500 and b"try again" in r.body
    assert "status page failed: OSError: no such file" in caplog.text


def test_the_page_embeds_the_document_safely() -> None:
    doc = {"labels": {"x": "</script><script>alert(1)</script>"}, "n": "a&b <!-- c -->"}
    page = status_page.render(doc).decode()
    embedded = re.search(r'<script type="application/json" id="initial">(.*?)</script>', page, re.S)
    assert embedded is not None
    assert json.loads(embedded.group(1)) == doc
    assert "<" not in embedded.group(1) and "alert(1)</script>" not in page
    assert status_page.PLACEHOLDER not in page


def test_the_page_is_self_contained_and_ships_in_the_package() -> None:
    page = status_page.template()
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", page, re.I)
    assert "@import" not in page and "url(" not in page and "http://" not in page
    assert 'fetch("status.json"' in page and "REFRESH_MS = 2000" in page
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["proxy"]
    assert any(fnmatch.fnmatch("admin/status_page.html", p) for p in patterns), patterns


def test_the_exporter_keeps_the_request_totals_a_scrape_shows() -> None:
    from proxy.metrics.export import Exporter
    from proxy.metrics.observer import CallRecorder, Series

    config, sources = setup()
    recorder = CallRecorder(sources.relay)
    exporter = Exporter(recorder, sources)
    assert not exporter.multiprocess
    series = recorder.series[("api.V1", "Get", "api")] = Series("api.V1", "Get", "api")
    series.codes = {0: 5, 14: 2}
    exporter.flush()
    series.codes = {0: 1}
    exporter.flush()
    totals = exporter.request_totals()
    assert totals == {("api.V1", "Get", "api", "OK"): 6, ("api.V1", "Get", "api", "UNAVAILABLE"): 2}
    scraped = {
        tuple(s.labels.values()): s.value
        for fam in exporter.m["grpc_proxy_requests_total"].collect()
        for s in fam.samples
        if s.name == "grpc_proxy_requests_total"
    }
    assert scraped == totals
