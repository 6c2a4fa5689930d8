"""What each admin path answers, without sockets: a request's method and
target in, a ``Response`` out. /metrics, the status page (``/``) and
/status.json are rendered off the trio thread: ``prepare`` reads what must be
read on it and returns the rest of the work."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxy.admin import status_page
from proxy.metrics.export import endpoint_healthy
from proxy.metrics.sources import Sources

if TYPE_CHECKING:
    from proxy.admin.status_board import StatusBoard

log = logging.getLogger("grpc_proxy.admin")

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
PATHS = ("/metrics", "/healthz", "/readyz", "/upstreams", "/", "/status.json")
STATUS_PATHS = ("/", "/status.json")
NO_STORE = ("Cache-Control", "no-store")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _text(status: int, text: str, *headers: tuple[str, str]) -> Response:
    return Response(status, TEXT, text.encode(), headers)


class AdminHandlers:
    """``metrics`` renders /metrics (None: metrics are off); ``status``
    serves the status page and /status.json (None: 404). Both run off the
    trio thread (see ``prepare``)."""

    def __init__(
        self,
        sources: Sources,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        status: StatusBoard | None = None,
    ) -> None:
        self.sources = sources
        self.metrics = metrics
        self.status = status

    def route(self, method: str, target: str) -> Response | None:
        """The response, or None for a GET the server renders off the trio
        thread with ``prepare``: /metrics, ``/`` and /status.json."""
        path = target.split("?", 1)[0]
        if path not in PATHS:
            return _text(404, "not found\n")
        if method != "GET":
            return _text(405, "method not allowed\n", ("Allow", "GET"))
        if path == "/metrics":
            if self.metrics is None:
                return _text(404, "metrics are off\n")
            return None
        if path in STATUS_PATHS:
            return None if self.status is not None else _text(404, "not found\n")
        if path == "/healthz":
            return _text(200, "ok\n")
        if path == "/readyz":
            reason = self.not_ready()
            return _text(200, "ready\n") if reason is None else _text(503, reason + "\n")
        return Response(200, JSON, json.dumps(self.upstreams(), indent=1).encode() + b"\n")

    def prepare(self, target: str) -> Callable[[], Response]:
        """For a target ``route`` answered None: read live state now (on the
        trio thread) and return the rest of the work, for a thread."""
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return self.render_metrics
        board = self.status
        assert board is not None
        snapshot = board.capture()
        not_ready = self.not_ready()
        draining = bool(self.sources.draining())

        def render() -> Response:
            try:
                doc = board.document(snapshot, not_ready, draining)
            except Exception as e:  # a page gets a status, the log one line
                log.warning("status page failed: %s: %s", type(e).__name__, e)
                return _text(500, "status unavailable, try again\n")
            if path == "/status.json":
                return Response(
                    200, JSON, json.dumps(doc, separators=(",", ":")).encode(), (NO_STORE,)
                )
            return Response(
                200,
                status_page.CONTENT_TYPE,
                status_page.render(doc),
                (NO_STORE, *status_page.HEADERS),
            )

        return render

    def render_metrics(self) -> Response:
        assert self.metrics is not None
        try:
            body, ctype = self.metrics()
        except Exception as e:  # a scraper gets a status, the log one line
            log.warning("metrics scrape failed: %s: %s", type(e).__name__, e)
            return _text(500, "metrics unavailable, try again\n")
        return Response(200, ctype, body)

    def not_ready(self) -> str | None:
        """Why the process should get no traffic now, or None: ready once
        every listener is up and every etcd pool has synced once; not while
        draining."""
        src = self.sources
        if src.draining():
            return "draining"
        if not src.listening:
            return "listeners are not up yet"
        for name, st in src.etcd().items():
            if not getattr(st, "synced_once", False):
                return f"upstream {name}: etcd has not synced yet"
        for check in src.ready_checks:
            reason = check()
            if reason:
                return reason
        return None

    def upstreams(self) -> dict[str, Any]:
        src = self.sources
        relay = src.relay
        now = relay.clock()
        conns = src.upstream_connections()
        etcd = src.etcd()
        pools = []
        for name, pool in relay.pools.items():
            status = etcd.get(name)
            pools.append(
                {
                    "name": name,
                    "source": "etcd" if status is not None else _pool_source(pool),
                    "policy": pool.balance.directive,
                    "endpoints": [
                        {
                            "address": str(ep.address),
                            "labels": dict(ep.meta),
                            "weight": ep.weight,
                            "backup": ep.backup,
                            "down": ep.down,
                            "healthy": endpoint_healthy(ep, now),
                            "active": ep.state.active,
                            "fails": ep.state.fails,
                            "connections": conns.get(ep.address, 0),
                            "source": ep.source,
                        }
                        for ep in pool.endpoints
                    ],
                    "etcd": _etcd_json(status, now) if status is not None else None,
                }
            )
        return {"upstreams": pools}


def _pool_source(pool: Any) -> str:
    sources = {ep.source for ep in pool.endpoints}
    return "etcd" if "etcd" in sources else "static"


def _etcd_json(status: Any, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("connected", "synced_once", "revision", "events_applied", "resyncs"):
        out[key] = getattr(status, key, None)
    last = getattr(status, "last_message_at", None)
    out["seconds_since_last_message"] = round(now - last, 3) if last is not None else None
    return out
