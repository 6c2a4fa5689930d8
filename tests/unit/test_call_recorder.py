"""What the relay reports per call (status, messages, bytes, endpoint,
errors, timeouts, retries) through a real relay in memory, and how the
recorder's counts become Prometheus series."""

from __future__ import annotations

import random

import h2.events
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from proxy.config.model import Location, Server
from proxy.http2.frames import ErrorCode
from proxy.metrics import names
from proxy.metrics.export import Exporter, _add_histogram
from proxy.metrics.observer import AccessLogQueue, CallRecorder
from proxy.metrics.sources import Sources
from tests.unit.frame_factory import REQUEST
from tests.unit.test_relay import RESPONSE, Rig

KEY = ("echo.Echo", "Unary", "u")


def msg(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def observed(rig: Rig, max_methods: int = 1000) -> tuple[CallRecorder, AccessLogQueue]:
    server = rig.down.server
    assert server is not None
    q = AccessLogQueue(False, 100)
    rec = CallRecorder(rig.relay, max_methods=max_methods, logs={id(server): (server, q)})
    rig.relay.observer = rec
    return rec, q


def start_call(rig: Rig, headers: list | None = None, body: bytes = b"", end: bool = False) -> int:
    rig.client.send_headers(1, headers or REQUEST, end_stream=end and not body)
    if body:
        rig.client.send_data(1, body, end_stream=end)
    rig.pump()
    reqs = rig.of(rig.server_events, h2.events.RequestReceived)
    return reqs[-1].stream_id if reqs else 0


def test_ok_call_counts_status_messages_bytes_endpoint_and_logs_one_record() -> None:
    rig = Rig()
    rec, q = observed(rig)
    body = msg(b"ab") + msg(b"")
    sid = start_call(rig, body=body, end=True)
    rig.clock.now = 0.004
    rig.server.send_headers(sid, RESPONSE)
    rig.server.send_data(sid, msg(b"xyz"))
    rig.server.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
    rig.pump()
    s = rec.series[KEY]
    assert s.codes == {0: 1}
    assert (s.msgs_in, s.msgs_out) == (2, 1)
    assert (rec.bytes_in, rec.bytes_out) == (len(body), 8)
    assert sum(s.buckets) == 1 and s.buckets[names.DURATION_BUCKETS.index(0.005)] == 1
    assert rec.upstream_calls == {(rig.eps[0], 0, "u"): 1}
    (r,) = q.records
    assert r[1:8] == ("", "/echo.Echo/Unary", "u", rig.eps[0].address, 200, 0, 0.004)
    assert r[8:13] == (len(body), 8, 2, 1, "")


def test_trailers_only_status_is_the_calls_status() -> None:
    rig = Rig()
    rec, q = observed(rig)
    sid = start_call(rig, end=True)
    rig.server.send_headers(sid, RESPONSE + [(b"grpc-status", b"5")], end_stream=True)
    rig.pump()
    assert rec.series[KEY].codes == {5: 1}
    assert q.records[0][6] == 5


def test_client_cancel_is_cancelled() -> None:
    rig = Rig()
    rec, q = observed(rig)
    start_call(rig)
    rig.client.reset_stream(1, ErrorCode.CANCEL)
    rig.pump()
    assert rec.series[KEY].codes == {1: 1}
    assert q.records[0][12] == "client cancelled"
    assert not rec.protocol_errors  # a cancel is no protocol error


def test_upstream_reset_before_headers_is_internal_and_counted_as_reset() -> None:
    rig = Rig()
    rec, q = observed(rig)
    sid = start_call(rig)
    rig.server.reset_stream(sid, ErrorCode.INTERNAL_ERROR)
    rig.pump()
    assert rec.series[KEY].codes == {13: 1}
    assert "INTERNAL_ERROR" in q.records[0][12]
    assert rec.protocol_errors == {"reset": 1}


def test_upstream_reset_mid_response_is_cancelled() -> None:
    rig = Rig()
    rec, _ = observed(rig)
    sid = start_call(rig)
    rig.server.send_headers(sid, RESPONSE)
    rig.server.reset_stream(sid, ErrorCode.CANCEL)
    rig.pump()
    assert rec.series[KEY].codes == {1: 1}


def test_deadline_and_idle_timeouts_are_counted_by_kind() -> None:
    rig = Rig(read_timeout=1.0)
    rec, q = observed(rig)
    start_call(rig, REQUEST + [(b"grpc-timeout", b"200m")])
    rig.clock.now = 0.3
    rig.relay.tick(0.3)
    rig.pump()
    assert rec.timeouts == {"deadline": 1}
    assert rec.series[KEY].codes == {4: 1}
    rig.client.send_headers(3, REQUEST)
    rig.pump()
    rig.clock.now = 1.5
    rig.relay.tick(1.5)
    rig.pump()
    assert rec.timeouts == {"deadline": 1, "read": 1}
    assert rec.series[KEY].codes == {4: 1, 14: 1}
    assert q.records[1][12] == "stream idle timeout"


def test_refused_stream_retry_is_counted_per_upstream() -> None:
    rig = Rig()
    rec, _ = observed(rig)
    sid = start_call(rig)
    rig.server.reset_stream(sid, ErrorCode.REFUSED_STREAM)
    rig.pump()
    assert rec.retries == {"u": 1}
    assert not rec.protocol_errors


def test_unrouted_call_is_service_unknown_and_logged() -> None:
    rig = Rig()
    rec, q = observed(rig)
    server = rig.down.server
    assert server is not None
    narrow = Server(server.listens, (Location("=/only.This/Method", True, "u"),))
    rig.down.server = narrow
    rec.logs = {id(narrow): (narrow, q)}
    start_call(rig, end=True)
    assert rec.series[("unknown", "unknown", "")].codes == {12: 1}
    assert q.records[0][12] == "no route for /echo.Echo/Unary"


def test_method_labels_are_capped() -> None:
    rig = Rig()
    rec, _ = observed(rig, max_methods=2)
    loc = Location("/", False, "u")
    labels = [
        (s.service, s.method)
        for s in (
            rec._series_for(loc, "/a.S/M1"),
            rec._series_for(loc, "/a.S/M2"),
            rec._series_for(loc, "/a.S/M3"),
            rec._series_for(loc, "/b.S/M"),
            rec._series_for(loc, "/a.S/M1"),
        )
    ]
    assert labels == [
        ("a.S", "M1"),
        ("a.S", "M2"),
        ("a.S", "other"),
        ("other", "other"),
        ("a.S", "M1"),
    ]
    rnd = random.Random(1)
    for _ in range(5000):
        rec._series_for(loc, f"/s{rnd.random()}/m{rnd.random()}")
    assert len(rec.series) == 4
    assert len(rec._paths) <= rec._path_limit


def test_full_access_log_queue_drops_and_counts() -> None:
    rig = Rig()
    rec, q = observed(rig)
    q.limit = 1
    for sid in (1, 3):
        rig.client.send_headers(sid, REQUEST, end_stream=True)
        rig.pump()
        rig.client.reset_stream(sid, ErrorCode.CANCEL)
        rig.pump()
    assert len(q.records) == 1 and q.dropped == 1


# ------------------------------------------------------------------ export


def scrape(exp: Exporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    exp.flush()
    text = exp.render()[0].decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_export_moves_counts_once_and_sets_gauges() -> None:
    rig = Rig()
    rec, _ = observed(rig)
    exp = Exporter(rec, Sources(rig.relay))
    sid = start_call(rig, body=msg(b"a"), end=True)
    m = scrape(exp)
    assert m[("grpc_proxy_active_streams", (("upstream", "u"),))] == 1
    rig.server.send_headers(sid, RESPONSE + [(b"grpc-status", b"14")], end_stream=True)
    rig.pump()
    labels = (
        ("code", "UNAVAILABLE"),
        ("method", "Unary"),
        ("service", "echo.Echo"),
        ("upstream", "u"),
    )
    for _ in range(2):  # a second flush adds nothing
        m = scrape(exp)
        assert m[("grpc_proxy_requests_total", labels)] == 1
        assert (
            m[
                (
                    "grpc_proxy_request_duration_seconds_count",
                    (("method", "Unary"), ("service", "echo.Echo"), ("upstream", "u")),
                )
            ]
            == 1
        )
        assert (
            m[
                (
                    "grpc_proxy_messages_total",
                    (("direction", "request"), ("method", "Unary"), ("service", "echo.Echo")),
                )
            ]
            == 1
        )
        assert m[("grpc_proxy_bytes_total", (("direction", "request"),))] == 6
        assert (
            m[
                (
                    "grpc_proxy_upstream_requests_total",
                    (("code", "UNAVAILABLE"), ("endpoint", "127.0.0.1:1"), ("upstream", "u")),
                )
            ]
            == 1
        )
        assert m[("grpc_proxy_active_streams", (("upstream", "u"),))] == 0
    ep = (("endpoint", "127.0.0.1:1"), ("upstream", "u"))
    assert m[("grpc_proxy_endpoint_healthy", ep)] == 1
    rig.eps[0].record_failure(rig.clock.now)
    assert scrape(exp)[("grpc_proxy_endpoint_healthy", ep)] == 0


def test_every_defined_metric_is_exported_under_its_name() -> None:
    rig = Rig()
    rec, _ = observed(rig)
    status = type("S", (), {"connected": True, "revision": 7, "resyncs": 2})()
    exp = Exporter(rec, Sources(rig.relay, etcd=lambda: {"u": status}))
    for kind in ("read", "connect", "deadline", "keepalive"):
        rec.timed_out(kind)
    rec.protocol_error("flood")
    rec.config_reloaded(True)
    m = scrape(exp)
    assert m[("grpc_proxy_timeouts_total", (("kind", "keepalive"),))] == 1
    assert m[("grpc_proxy_http2_protocol_errors_total", (("kind", "flood"),))] == 1
    assert m[("grpc_proxy_config_reloads_total", (("result", "success"),))] == 1
    assert m[("grpc_proxy_etcd_revision", (("upstream", "u"),))] == 7
    assert m[("grpc_proxy_etcd_connected", (("upstream", "u"),))] == 1
    assert m[("grpc_proxy_etcd_resyncs_total", (("upstream", "u"),))] == 2
    families = {f.name for f in text_string_to_metric_families(exp.render()[0].decode())}
    for d in names.ALL:
        assert d.name.removesuffix("_total") in families, d.name


def test_bulk_histogram_equals_observing_one_by_one() -> None:
    durations = [0.0001, 0.0005, 0.0007, 0.003, 0.2, 0.2, 7.0, 59.0, 61.0, 1e9]
    bounds = (*names.DURATION_BUCKETS, float("inf"))
    from bisect import bisect_left

    counts = [0] * len(bounds)
    for d in durations:
        counts[bisect_left(bounds, d)] += 1
    a, b = CollectorRegistry(), CollectorRegistry()
    ha = Histogram("h", "h", buckets=names.DURATION_BUCKETS, registry=a)
    hb = Histogram("h", "h", buckets=names.DURATION_BUCKETS, registry=b)
    for d in durations:
        ha.observe(d)
    _add_histogram(hb, counts, sum(durations))
    assert [s for f in a.collect() for s in f.samples if s.name != "h_created"] == [
        s for f in b.collect() for s in f.samples if s.name != "h_created"
    ]
