"""The relay's side of the balancing policies, in memory (see test_relay.Rig):
the request context for sticky policies and subsets, the max_conns queue, and
least_time's latency samples."""

from __future__ import annotations

from dataclasses import replace

import h2.events

from proxy.balancing.pool import PoolSnapshot
from proxy.config.model import Balance
from proxy.relay.call import CallState
from tests.unit.frame_factory import REQUEST
from tests.unit.test_relay import RESPONSE, Rig


def _pool(rig: Rig, **kw: object) -> PoolSnapshot:
    pool = PoolSnapshot("u", tuple(rig.eps), (), 1.0, **kw)  # type: ignore[arg-type]
    rig.relay.pools["u"] = pool
    return pool


def _status(rig: Rig, stream_id: int) -> tuple[bytes, bytes]:
    for e in rig.client_events:
        if (
            isinstance(e, (h2.events.ResponseReceived, h2.events.TrailersReceived))
            and e.stream_id == stream_id
        ):
            h = dict(e.headers)
            if b"grpc-status" in h:
                return h[b"grpc-status"], h.get(b"grpc-message", b"")
    raise AssertionError(f"no response on stream {stream_id}")


def _answer(rig: Rig, req: h2.events.RequestReceived) -> None:
    rig.server.send_headers(req.stream_id, RESPONSE)
    rig.server.send_headers(req.stream_id, [(b"grpc-status", b"0")], end_stream=True)
    rig.pump()


def test_subset_miss_is_unavailable_with_key_and_value() -> None:
    rig = Rig()
    rig.eps[0] = replace(rig.eps[0], meta=(("version", "v1"),))
    _pool(rig, subset="version")
    rig.client.send_headers(1, REQUEST + [(b"version", b"v3")], end_stream=True)
    rig.pump()
    assert _status(rig, 1) == (b"14", b"no upstream endpoint matches version=v3")
    assert not rig.of(rig.server_events, h2.events.RequestReceived)
    assert not rig.relay.active


def test_subset_match_goes_to_the_labelled_endpoint() -> None:
    rig = Rig(attach=False)
    rig.eps[1] = replace(rig.eps[1], meta=(("version", "v2"),))
    _pool(rig, subset="version")
    for sid in (1, 3, 5):
        rig.client.send_headers(sid, REQUEST + [(b"version", b"v2")], end_stream=True)
    rig.pump()
    assert [ep for ep, _ in rig.waiting] == [rig.eps[1]] * 3


def test_hash_sees_the_request_metadata() -> None:
    rig = Rig(attach=False)
    _pool(rig, balance=Balance("hash", "$http_user"))
    for i in range(10):
        rig.client.send_headers(1 + 4 * i, REQUEST + [(b"user", b"alice")], end_stream=True)
        rig.client.send_headers(3 + 4 * i, REQUEST + [(b"user", b"bob")], end_stream=True)
    rig.pump()
    alice = {ep for ep, rs in rig.waiting if (b"user", b"alice") in rs.request_headers}
    bob = {ep for ep, rs in rig.waiting if (b"user", b"bob") in rs.request_headers}
    assert len(alice) == 1 and len(bob) == 1


def test_at_max_conns_without_queue_is_unavailable_at_once() -> None:
    rig = Rig()
    rig.eps[0] = replace(rig.eps[0], max_conns=1)
    rig.eps[1] = replace(rig.eps[1], down=True)
    _pool(rig)
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.client.send_headers(3, REQUEST, end_stream=True)
    rig.pump()
    assert len(rig.of(rig.server_events, h2.events.RequestReceived)) == 1
    assert _status(rig, 3) == (b"14", b"every endpoint of u is at max_conns")
    assert rig.eps[0].state.active == 1


def test_queued_call_is_dispatched_when_a_stream_ends() -> None:
    rig = Rig()
    rig.eps[0] = replace(rig.eps[0], max_conns=1)
    rig.eps[1] = replace(rig.eps[1], down=True)
    _pool(rig, queue_timeout=5.0)
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.client.send_headers(3, REQUEST, end_stream=True)
    rig.pump()
    (first,) = rig.of(rig.server_events, h2.events.RequestReceived)
    assert rig.relay.queues.size == 1 and rig.eps[0].state.active == 1
    queued = next(rs for rs in rig.relay.active if rs.down.id == 3)
    assert queued.state is CallState.QUEUED and queued.endpoint is None
    _answer(rig, first)
    reqs = rig.of(rig.server_events, h2.events.RequestReceived)
    assert len(reqs) == 2 and rig.relay.queues.size == 0
    assert queued.state is CallState.STREAMING and queued.endpoint is rig.eps[0]
    assert rig.eps[0].state.active == 1
    _answer(rig, reqs[1])
    assert _status(rig, 1)[0] == _status(rig, 3)[0] == b"0"
    assert rig.eps[0].state.active == 0 and not rig.relay.active


def test_queued_call_times_out_with_unavailable() -> None:
    rig = Rig()
    rig.eps[0] = replace(rig.eps[0], max_conns=1)
    rig.eps[1] = replace(rig.eps[1], down=True)
    _pool(rig, queue_timeout=1.0)
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.client.send_headers(3, REQUEST, end_stream=True)
    rig.pump()
    rig.clock.now = 0.5
    rig.relay.tick(0.5)
    rig.pump()
    assert rig.relay.queues.size == 1
    rig.clock.now = 1.01
    rig.relay.tick(1.01)
    rig.pump()
    assert _status(rig, 3) == (b"14", b"queue timeout: every endpoint of u is at max_conns")
    assert rig.relay.queues.size == 0
    assert len(rig.of(rig.server_events, h2.events.RequestReceived)) == 1


def test_cancelled_queued_call_leaves_the_queue() -> None:
    rig = Rig()
    rig.eps[0] = replace(rig.eps[0], max_conns=1)
    rig.eps[1] = replace(rig.eps[1], down=True)
    _pool(rig, queue_timeout=5.0)
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.client.send_headers(3, REQUEST, end_stream=True)
    rig.pump()
    rig.client.reset_stream(3)
    rig.pump()
    (first,) = rig.of(rig.server_events, h2.events.RequestReceived)
    _answer(rig, first)
    assert len(rig.of(rig.server_events, h2.events.RequestReceived)) == 1
    assert rig.relay.queues.size == 0 and rig.eps[0].state.active == 0


def test_least_time_records_response_header_latency() -> None:
    rig = Rig()
    _pool(rig, balance=Balance("least_time"))
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    ep = next(e for e in rig.eps if e.state.active)
    rig.clock.now = 0.25
    _answer(rig, req)
    assert ep.state.latency == 0.25 and ep.state.latency_at == 0.25


def test_round_robin_records_no_latency() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    rig.clock.now = 0.25
    _answer(rig, req)
    assert all(e.state.latency == 0.0 for e in rig.eps)
