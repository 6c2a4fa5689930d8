"""Per-call accounting in plain Python ints: the relay's ``CallObserver``.

prometheus-client takes a lock (and in multiprocess mode writes an mmap) per
``inc``/``observe``; several of those per call would cost more than the relay
itself. So each finished call does a few dict and list updates here, keyed by
label tuples cached per path, and ``export.Exporter`` moves the deltas into
prometheus-client once a second and before every scrape.

Label values stay bounded: calls no location matched are service="unknown",
method="unknown"; after ``max_methods`` distinct (service, method) pairs, a new
pair counts as (service, "other") if the service is known, else
("other", "other").
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Protocol

from proxy.metrics.names import DURATION_BUCKETS
from proxy.status import GrpcStatus, status_of_final_headers

if TYPE_CHECKING:
    from proxy.balancing.endpoint import Endpoint
    from proxy.config.model import Location, Server
    from proxy.relay.call import RelayStream
    from proxy.relay.link import Link
    from proxy.status import Answer

UNKNOWN = "unknown"
OTHER = "other"
# Histogram upper bounds with +Inf: a duration lands in bisect_left(BOUNDS, d),
# prometheus' "le" rule.
BOUNDS: tuple[float, ...] = (*DURATION_BUCKETS, float("inf"))
CODE_NAMES: dict[int, str] = {int(s): s.name for s in GrpcStatus}


class _HasNow(Protocol):
    now: float


class Series:
    """What one (service, method, upstream) accumulated since the last export."""

    __slots__ = (
        "service",
        "method",
        "upstream",
        "codes",
        "buckets",
        "total",
        "msgs_in",
        "msgs_out",
    )

    def __init__(self, service: str, method: str, upstream: str) -> None:
        self.service = service
        self.method = method
        self.upstream = upstream
        self.codes: dict[int, int] = {}  # grpc-status -> calls
        self.buckets = [0] * len(BOUNDS)
        self.total = 0.0  # seconds, the histogram's _sum
        self.msgs_in = 0  # request messages (client -> upstream)
        self.msgs_out = 0


class AccessLogQueue:
    """Where finished calls go for one access log: a bounded list the log
    writer takes whole. What does not fit is counted, never waited for."""

    __slots__ = ("json", "records", "limit", "dropped")

    def __init__(self, json: bool, limit: int) -> None:
        self.json = json
        self.records: list[Record] = []
        self.limit = limit
        self.dropped = 0

    def take(self) -> list[Record]:
        records = self.records
        self.records = []
        return records


# One access log record: (wall time, client, path, upstream, endpoint address
# or None, http status, grpc status, seconds, request bytes, response bytes,
# request messages, response messages, error, request headers, bearer token
# name, TLS client certificate subject).
Record = tuple[Any, ...]


class CallRecorder:
    """Aggregates finished calls for metrics (``metrics``) and queues access
    log records for the servers that have one (``logs``: id(server) ->
    (server, queue)). ``clock`` has the time of the current batch in ``now``
    (the relay)."""

    def __init__(
        self,
        clock: _HasNow,
        *,
        metrics: bool = True,
        max_methods: int = 1000,
        logs: dict[int, tuple[Server, AccessLogQueue]] | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = metrics
        self.max_methods = max_methods
        self.logs = logs or {}
        self.series: dict[tuple[str, str, str], Series] = {}
        # path -> (location, series); bounded, see _series_for.
        self._paths: dict[str, tuple[Location | None, Series]] = {}
        self._path_limit = 4 * max_methods + 64
        self._pairs: set[tuple[str, str]] = set()
        self._services: set[str] = set()
        self.bytes_in = 0
        self.bytes_out = 0
        # (endpoint, code, upstream) -> calls whose last attempt went there
        self.upstream_calls: dict[tuple[Endpoint, int, str], int] = {}
        self.retries: dict[str, int] = {}
        self.timeouts: dict[str, int] = {}
        self.protocol_errors: dict[str, int] = {}
        self.reloads: dict[str, int] = {}

    # ------------------------------------------------------ CallObserver

    def call_ended(self, rs: RelayStream) -> None:
        status = rs.status
        if status < 0:
            status = status_of_final_headers(rs.response.trailers)
        ep = rs.tried[-1] if rs.tried else None
        duration = self.clock.now - rs.started
        req = rs.request
        res = rs.response
        if self.metrics:
            path = rs.path
            loc = rs.location
            entry = self._paths.get(path)
            s = entry[1] if entry is not None and entry[0] is loc else self._series_for(loc, path)
            codes = s.codes
            codes[status] = codes.get(status, 0) + 1
            s.buckets[bisect_left(BOUNDS, duration)] += 1
            s.total += duration
            s.msgs_in += req.messages
            s.msgs_out += res.messages
            self.bytes_in += req.bytes
            self.bytes_out += res.bytes
            if ep is not None:
                key = (ep, status, s.upstream)
                up = self.upstream_calls
                up[key] = up.get(key, 0) + 1
        if self.logs:
            server = rs.down_link.server
            target = self.logs.get(id(server))
            if target is not None and target[0] is server:
                self._log(
                    target[1],
                    (
                        time.time(),
                        rs.down_link.peer,
                        rs.path,
                        rs.location.upstream,
                        ep.address if ep is not None else None,
                        200,
                        status,
                        duration,
                        req.bytes,
                        res.bytes,
                        req.messages,
                        res.messages,
                        rs.error,
                        rs.request_headers,
                        rs.user,
                        _subject(rs.down_link),
                    ),
                )

    def call_refused(self, link: Link, path: str, answer: Answer, now: float) -> None:
        status = int(answer.grpc_status)
        if self.metrics:
            s = self._series_for(None, path)
            s.codes[status] = s.codes.get(status, 0) + 1
            s.buckets[0] += 1  # answered at once
        if self.logs:
            server = link.server
            target = self.logs.get(id(server))
            if target is not None and target[0] is server:
                self._log(
                    target[1],
                    (
                        time.time(),
                        link.peer,
                        path,
                        "",
                        None,
                        answer.http_status,
                        status,
                        0.0,
                        0,
                        0,
                        0,
                        0,
                        answer.message,
                        None,
                        None,
                        _subject(link),
                    ),
                )

    def retried(self, rs: RelayStream) -> None:
        name = rs.pool.name
        self.retries[name] = self.retries.get(name, 0) + 1

    def timed_out(self, kind: str) -> None:
        self.timeouts[kind] = self.timeouts.get(kind, 0) + 1

    def protocol_error(self, kind: str) -> None:
        self.protocol_errors[kind] = self.protocol_errors.get(kind, 0) + 1

    # --------------------------------------------------- other reporters

    def config_reloaded(self, ok: bool) -> None:
        """For the reload of issue 5: count one reload by result."""
        result = "success" if ok else "failure"
        self.reloads[result] = self.reloads.get(result, 0) + 1

    # ----------------------------------------------------------- labels

    def _series_for(self, loc: Location | None, path: str) -> Series:
        if loc is None:
            service = method = UNKNOWN
            upstream = ""
        else:
            service, method = self._bounded(*_split_path(path))
            upstream = loc.upstream
        key = (service, method, upstream)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series(service, method, upstream)
        if loc is not None and (path in self._paths or len(self._paths) < self._path_limit):
            self._paths[path] = (loc, s)
        return s

    def _bounded(self, service: str, method: str) -> tuple[str, str]:
        pair = (service, method)
        if pair in self._pairs:
            return pair
        if len(self._pairs) < self.max_methods:
            self._pairs.add(pair)
            self._services.add(service)
            return pair
        return (service if service in self._services else OTHER), OTHER

    # ------------------------------------------------------- access log

    @staticmethod
    def _log(q: AccessLogQueue, record: Record) -> None:
        if len(q.records) < q.limit:
            q.records.append(record)
        else:
            q.dropped += 1


def _subject(link: Link) -> str | None:
    """The verified TLS client subject of a client link (ssl_verify_client)."""
    client = link.client
    return client.subject if client is not None else None


def _split_path(path: str) -> tuple[str, str]:
    """ "/pkg.Service/Method" -> ("pkg.Service", "Method")."""
    service, _, method = path[1:].partition("/")
    return service, method
