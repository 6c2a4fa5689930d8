"""The prometheus-client side: metric objects, the periodic move of the
recorder's deltas into them, gauges read from live state, and the text a
scrape returns.

With ``PROMETHEUS_MULTIPROC_DIR`` set (worker processes), every process writes
its values to mmap files there and a scrape of any process merges them all:
counters and histograms add up, gauges merge by their ``multiprocess_mode``.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from proxy.balancing.endpoint import Endpoint
from proxy.metrics import names
from proxy.metrics.names import MetricDef
from proxy.metrics.observer import CODE_NAMES, AccessLogQueue, CallRecorder
from proxy.metrics.sources import Sources

log = logging.getLogger("grpc_proxy.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    # prometheus-client also honours the older lower-case name.
    legacy = os.environ.get("prometheus_multiproc_dir")  # noqa: SIM112
    return os.environ.get(MULTIPROC_ENV) or legacy or None


def worker_exited(pid: int) -> None:
    """For the master (issue 5), when a worker exits: its live gauges
    (active streams, connections, health) leave the merged scrape; its
    counters stay, so totals never go down."""
    path = multiprocess_dir()
    if path is not None:
        mark_process_dead(pid, path)
        from proxy.admin.status_board import remove_snapshot

        remove_snapshot(path, pid)  # its pool view leaves the status page


def _use_multiprocess_values() -> None:
    """prometheus-client picks its value class when first imported; a worker
    whose master set the variable after that import still has to write to
    the shared files. Only ever switch away from the in-memory class (two mmap
    classes on the same files would corrupt them)."""
    if multiprocess_dir() and values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()


def _code(code: int) -> str:
    return CODE_NAMES.get(code, "UNKNOWN")


class Exporter:
    def __init__(self, recorder: CallRecorder, sources: Sources) -> None:
        _use_multiprocess_values()
        # No *_created series: they double what a scrape carries, and
        # multiprocess mode has none, so one worker or many look the same.
        disable_created_metrics()
        self.recorder = recorder
        self.sources = sources
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry(auto_describe=False)
        self.m: dict[str, Any] = {d.name: self._make(d) for d in names.ALL}
        self._gauge_labels: dict[str, set[tuple[str, ...]]] = {}
        self._etcd_resyncs: dict[str, int] = {}
        self._dropped = 0
        # What went into grpc_proxy_requests_total, for the status page:
        # cheaper to keep than to read back from prometheus-client.
        self._request_totals: dict[tuple[str, str, str, str], float] = {}

    def _make(self, d: MetricDef) -> Any:
        # prometheus-client appends _total to counter names itself.
        name = d.name.removesuffix("_total") if d.kind == "counter" else d.name
        kw: dict[str, Any] = {"registry": self.registry}
        if d.kind == "counter":
            return Counter(name, d.help, d.labels, **kw)
        if d.kind == "histogram":
            return Histogram(name, d.help, d.labels, buckets=names.DURATION_BUCKETS, **kw)
        return Gauge(name, d.help, d.labels, multiprocess_mode=d.multiprocess_mode, **kw)

    # ---------------------------------------------------------------- flush

    def flush(self) -> None:
        """Move what the recorder counted since the last flush into the
        metrics, and set the gauges from live state."""
        self._flush_calls()
        self._flush_events()
        self._set_gauges()

    def _flush_calls(self) -> None:
        rec = self.recorder
        m = self.m
        requests = m[names.REQUESTS.name]
        duration = m[names.DURATION.name]
        messages = m[names.MESSAGES.name]
        totals = self._request_totals
        for s in rec.series.values():
            codes = s.codes
            for code, n in codes.items():
                if n:
                    name = _code(code)
                    requests.labels(s.service, s.method, s.upstream, name).inc(n)
                    key = (s.service, s.method, s.upstream, name)
                    totals[key] = totals.get(key, 0) + n
                    codes[code] = 0
            if any(s.buckets):
                _add_histogram(duration.labels(s.service, s.method, s.upstream), s.buckets, s.total)
                s.buckets = [0] * len(s.buckets)
                s.total = 0.0
            if s.msgs_in:
                messages.labels(s.service, s.method, "request").inc(s.msgs_in)
                s.msgs_in = 0
            if s.msgs_out:
                messages.labels(s.service, s.method, "response").inc(s.msgs_out)
                s.msgs_out = 0
        byte_counter = m[names.BYTES.name]
        if rec.bytes_in:
            byte_counter.labels("request").inc(rec.bytes_in)
            rec.bytes_in = 0
        if rec.bytes_out:
            byte_counter.labels("response").inc(rec.bytes_out)
            rec.bytes_out = 0
        calls, rec.upstream_calls = rec.upstream_calls, {}
        upstream_requests = m[names.UPSTREAM_REQUESTS.name]
        for (ep, code, upstream), n in calls.items():
            upstream_requests.labels(upstream, str(ep.address), _code(code)).inc(n)

    def _flush_events(self) -> None:
        rec = self.recorder
        m = self.m
        for metric, counts in (
            (names.RETRIES, rec.retries),
            (names.TIMEOUTS, rec.timeouts),
            (names.PROTOCOL_ERRORS, rec.protocol_errors),
            (names.CONFIG_RELOADS, rec.reloads),
        ):
            for label, n in counts.items():
                if n:
                    m[metric.name].labels(label).inc(n)
                    counts[label] = 0
        queues = {id(q): q for _, q in rec.logs.values()}
        dropped = sum(q.dropped for q in queues.values())
        if dropped > self._dropped:
            m[names.ACCESS_LOG_DROPPED.name].inc(dropped - self._dropped)
            self._dropped = dropped

    def _set_gauges(self) -> None:
        src = self.sources
        relay = src.relay
        now = relay.clock()
        m = self.m
        pools = relay.pools
        active = dict.fromkeys(pools, 0)
        for rs in relay.active:
            name = rs.location.upstream
            active[name] = active.get(name, 0) + 1
        self._set(names.ACTIVE_STREAMS, {(k,): v for k, v in active.items()})
        m[names.DOWNSTREAM_CONNECTIONS.name].set(src.downstream_connections())
        conns = src.upstream_connections()
        connections: dict[tuple[str, ...], float] = {}
        healthy: dict[tuple[str, ...], float] = {}
        for name, pool in pools.items():
            for ep in pool.endpoints:
                key = (name, str(ep.address))
                connections[key] = conns.get(ep.address, 0)
                healthy[key] = 1 if endpoint_healthy(ep, now) else 0
        self._set(names.UPSTREAM_CONNECTIONS, connections)
        self._set(names.ENDPOINT_HEALTHY, healthy)
        etcd = src.etcd()
        self._set(
            names.ETCD_CONNECTED,
            {(k,): 1 if getattr(st, "connected", False) else 0 for k, st in etcd.items()},
        )
        self._set(
            names.ETCD_REVISION, {(k,): getattr(st, "revision", 0) or 0 for k, st in etcd.items()}
        )
        resyncs = m[names.ETCD_RESYNCS.name]
        for k, st in etcd.items():
            total = getattr(st, "resyncs", 0) or 0
            seen = self._etcd_resyncs.get(k, 0)
            if k not in self._etcd_resyncs:
                resyncs.labels(k)  # the series exists (at 0) from the feed's start
            if total > seen:
                resyncs.labels(k).inc(total - seen)
            self._etcd_resyncs[k] = total

    def _set(self, d: MetricDef, series: dict[tuple[str, ...], float]) -> None:
        """Set a labelled gauge to exactly ``series``: series that went away
        (a pool or endpoint removed) are dropped."""
        gauge = self.m[d.name]
        for labels, value in series.items():
            gauge.labels(*labels).set(value)
        before = self._gauge_labels.get(d.name, set())
        for labels in before - series.keys():
            gauge.remove(*labels)
        self._gauge_labels[d.name] = set(series)

    # --------------------------------------------------------------- scrape

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type. In multiprocess mode,
        read every process's files (this one's were just flushed)."""
        if self.multiprocess:
            registry = CollectorRegistry(auto_describe=False)
            SettledFilesCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def request_totals(self) -> dict[tuple[str, str, str, str], float]:
        """``grpc_proxy_requests_total`` as (service, method, upstream, code)
        -> calls, as a scrape would show it: this process's counts, or in
        multiprocess mode every worker's counter files merged (exited workers'
        included). For the status page's rates; safe off the trio thread."""
        if not self.multiprocess:
            return dict(self._request_totals)  # one C-level copy: atomic under the GIL
        families = SettledFilesCollector(
            None, path=multiprocess_dir(), pattern="counter_*.db"
        ).collect()
        out: dict[tuple[str, str, str, str], float] = {}
        for family in families:
            for s in family.samples:
                if s.name == names.REQUESTS.name:
                    lb = s.labels
                    key = (
                        lb.get("service", ""),
                        lb.get("method", ""),
                        lb.get("upstream", ""),
                        lb.get("code", ""),
                    )
                    out[key] = out.get(key, 0.0) + s.value
        return out


class SettledFilesCollector(MultiProcessCollector):
    """MultiProcessCollector without the files another process has created
    but not yet sized: prometheus-client creates a worker's file empty, then
    grows it, and reading it in between fails the whole scrape. ``pattern``
    picks a kind of file (``counter_*.db``: counters only, a cheaper read)."""

    def __init__(self, registry: Any, path: str | None = None, pattern: str = "*.db") -> None:
        super().__init__(registry, path)
        self._pattern = pattern

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, self._pattern)):
            try:
                if os.path.getsize(path) >= 8:  # the header: used bytes, padding
                    files.append(path)
            except OSError:  # removed meanwhile (a dead worker's, cleaned up)
                pass
        merged: Iterable[Metric] = self.merge(files, accumulate=True)
        return merged


def endpoint_healthy(ep: Endpoint, now: float) -> bool:
    """Can take calls: not down, not failed out by passive health, and not
    marked unhealthy by an active health check (issue 3's ``healthy``)."""
    return ep.available(now)


def _add_histogram(child: Any, buckets: list[int], total: float) -> None:
    """Add aggregated bucket counts to one histogram child. prometheus-client
    has no public bulk API; its per-bucket values (``_buckets``, not
    cumulative) and ``_sum`` take ``inc``. Without them, observe each count at
    its bucket's bound (sums then approximate)."""
    cells = getattr(child, "_buckets", None)
    acc = getattr(child, "_sum", None)
    if cells is not None and acc is not None and len(cells) == len(buckets):
        for i, n in enumerate(buckets):
            if n:
                cells[i].inc(n)
        acc.inc(total)
        return
    bounds = (*names.DURATION_BUCKETS, names.DURATION_BUCKETS[-1])
    for i, n in enumerate(buckets):
        for _ in range(n):
            child.observe(bounds[i])


def queues_of(recorder: CallRecorder) -> list[AccessLogQueue]:
    return list({id(q): q for _, q in recorder.logs.values()}.values())
