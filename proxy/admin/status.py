"""The status page's JSON (``/status.json``), shaped from plain values:
listeners and routes from the configuration, every upstream pool with each
endpoint's state, etcd feeds, and calls per service/method over the last
minute. No sockets, files or clocks here (``status_board`` has those).

With several worker processes each worker's pool view is a *snapshot*
(``local_snapshot``: plain JSON); ``merge_snapshots`` adds them up: active
streams, failures and connections are summed, an endpoint is "failed" if
any worker has it failed out, and every worker's etcd feed is listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from proxy.balancing.endpoint import Endpoint
from proxy.metrics.rates import MethodRate

VERSION = 1
MAX_METHODS = 200  # rows in "calls"; the rest are counted in "omitted"

UP, DOWN, FAILED = "up", "down", "failed"
_RANK = {UP: 0, DOWN: 1, FAILED: 2}  # the worse state wins a merge


def policy_name(balance: Any) -> str:
    """The balancing method as the config spells it (``Balance.directive``)."""
    return str(balance.directive) if balance is not None else "round_robin"


def endpoint_state(ep: Endpoint, now: float) -> tuple[str, str]:
    """(state, why): "down" (``down`` in the config), "failed" (out of
    rotation: its health check fails, or ``max_fails`` within
    ``fail_timeout``), else "up"."""
    if ep.down:
        return DOWN, "marked down"
    st = ep.state
    if not st.healthy:
        return FAILED, "health check failing"
    if not ep.available(now):
        left = max(0.0, st.failed_at + ep.fail_timeout - now)
        return FAILED, f"{st.fails} failed, retried in {left:.0f}s"
    return UP, ""


def _source(upstream: Any, pool: Any, etcd_fed: bool) -> str:
    if upstream is not None:
        static = bool(upstream.servers)
        if upstream.etcd is not None:
            return "static + etcd" if static else "etcd"
        return "static"
    sources = {ep.source for ep in pool.endpoints}
    if etcd_fed or "etcd" in sources:
        return "static + etcd" if "static" in sources else "etcd"
    return "static"


def etcd_feed(status: Any, now: float, pid: int) -> dict[str, Any]:
    last = getattr(status, "last_message_at", None)
    return {
        "pid": pid,
        "url": getattr(status, "url", "") or "",
        "connected": bool(getattr(status, "connected", False)),
        "synced_once": bool(getattr(status, "synced_once", False)),
        "revision": int(getattr(status, "revision", 0) or 0),
        "events_applied": int(getattr(status, "events_applied", 0) or 0),
        "resyncs": int(getattr(status, "resyncs", 0) or 0),
        "endpoints": int(getattr(status, "endpoints", 0) or 0),
        "seconds_since_last_message": round(now - last, 1) if last is not None else None,
    }


def upstream_snapshot(
    name: str,
    pool: Any,
    upstream: Any,
    etcd_status: Any,
    connections: Mapping[Any, int],
    now: float,
    pid: int,
) -> dict[str, Any]:
    """One pool as this process sees it. ``upstream``: its config (the
    configured balancing method), or None; ``etcd_status``: its etcd feed's
    status, or None."""
    balance = upstream.balance if upstream is not None else getattr(pool, "balance", None)
    endpoints = []
    for ep in pool.endpoints:
        state, why = endpoint_state(ep, now)
        endpoints.append(
            {
                "address": str(ep.address),
                "state": state,
                "reason": why,
                "active": int(ep.state.active),
                "fails": int(ep.state.fails),
                "connections": int(connections.get(ep.address, 0)),
                "weight": int(ep.weight),
                "backup": bool(ep.backup),
                "source": str(ep.source),
                "labels": dict(ep.meta),
                "failed_in": 1 if state == FAILED else 0,
            }
        )
    health = upstream.health_check if upstream is not None else None
    return {
        "name": name,
        "policy": policy_name(balance),
        "source": _source(upstream, pool, etcd_status is not None),
        "implicit": bool(getattr(upstream, "implicit", False)),
        "subset": getattr(upstream, "subset", None),
        "health_check": health is not None,
        "endpoints": endpoints,
        "etcd": [etcd_feed(etcd_status, now, pid)] if etcd_status is not None else [],
    }


def local_snapshot(
    pools: Mapping[str, Any],
    upstreams: Mapping[str, Any],
    etcd: Mapping[str, Any],
    connections: Mapping[Any, int],
    now: float,
    pid: int,
) -> dict[str, Any]:
    """This process's view of every pool (``pools``: name -> PoolSnapshot;
    ``upstreams``: name -> config Upstream)."""
    return {
        "pid": pid,
        "upstreams": [
            upstream_snapshot(
                name, pool, upstreams.get(name), etcd.get(name), connections, now, pid
            )
            for name, pool in pools.items()
        ],
    }


def merge_snapshots(snapshots: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every worker's pools as one list: pools and endpoints in the order the
    first snapshot has them (the answering worker's), others' extra ones after."""
    pools: dict[str, dict[str, Any]] = {}
    for snap in snapshots:
        for up in snap.get("upstreams", ()):
            mine = pools.get(up["name"])
            if mine is None:
                mine = pools[up["name"]] = {
                    **up,
                    "endpoints": [dict(ep) for ep in up["endpoints"]],
                    "etcd": [dict(f) for f in up["etcd"]],
                }
                continue
            by_address = {ep["address"]: ep for ep in mine["endpoints"]}
            for ep in up["endpoints"]:
                have = by_address.get(ep["address"])
                if have is None:
                    mine["endpoints"].append(dict(ep))
                    continue
                for key in ("active", "fails", "connections", "failed_in"):
                    have[key] += ep[key]
                if _RANK[ep["state"]] > _RANK[have["state"]]:
                    have["state"], have["reason"] = ep["state"], ep["reason"]
            mine["etcd"].extend(dict(f) for f in up["etcd"])
    for pool in pools.values():
        eps = pool["endpoints"]
        pool["up"] = sum(1 for ep in eps if ep["state"] == UP)
        pool["active"] = sum(ep["active"] for ep in eps)
    return list(pools.values())


def listeners(config: Any) -> list[dict[str, Any]]:
    """One entry per ``server`` block: its listen addresses and routes."""
    if config is None:
        return []
    out = []
    for server in config.servers:
        out.append(
            {
                "addresses": [str(listen.address) for listen in server.listens],
                "tls": any(listen.ssl for listen in server.listens),
                "routes": [
                    {"path": ("= " if loc.exact else "") + loc.path, "upstream": loc.upstream}
                    for loc in server.locations
                ],
            }
        )
    return out


def calls(
    rows: Iterable[MethodRate], seconds: float, span: float, limit: int = MAX_METHODS
) -> dict[str, Any]:
    """Calls per service/method over the window (``seconds`` long, at most
    about ``span``; 0 while there is only one sample)."""
    rows = list(rows)
    window_calls = sum(r.calls for r in rows)
    window_errors = sum(r.errors for r in rows)
    return {
        "span": span,
        "seconds": round(seconds, 2),
        "per_second": _rate(window_calls, seconds),
        "error_ratio": round(window_errors / window_calls, 4) if window_calls else 0.0,
        "calls": int(window_calls),
        "methods": [
            {
                "service": r.service,
                "method": r.method,
                "upstream": r.upstream,
                "per_second": _rate(r.calls, seconds),
                "error_ratio": round(r.error_ratio, 4),
                "calls": int(r.calls),
                "errors": int(r.errors),
                "total": int(r.total),
                "codes": {code: int(n) for code, n in sorted(r.codes.items(), key=lambda c: -c[1])},
            }
            for r in rows[:limit]
        ],
        "omitted": max(0, len(rows) - limit),
    }


def _rate(n: float, seconds: float) -> float:
    return round(n / seconds, 3) if seconds > 0 else 0.0


def document(
    *,
    config: Any,
    snapshots: Sequence[Mapping[str, Any]],
    calls_part: dict[str, Any],
    pid: int,
    time: float,
    not_ready: str | None,
    draining: bool,
) -> dict[str, Any]:
    """The whole /status.json. ``snapshots``: the answering worker's first."""
    admin = getattr(config, "admin", None)
    return {
        "version": VERSION,
        "time": round(time, 3),
        "pid": pid,
        "workers": len(snapshots),
        "worker_processes": getattr(config, "worker_processes", 1),
        "ready": not_ready is None,
        "not_ready": not_ready,
        "draining": draining,
        "admin": str(admin.listen) if admin is not None else None,
        "listeners": listeners(config),
        "upstreams": merge_snapshots(snapshots),
        "calls": calls_part,
    }
