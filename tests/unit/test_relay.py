"""The relay between two h2 peers, in memory: an h2 client on the downstream
core, an h2 server on the upstream core, and the relay in between."""

from __future__ import annotations

from dataclasses import replace

import h2.config
import h2.connection
import h2.events
import h2.settings

from proxy.balancing.endpoint import Endpoint
from proxy.balancing.pool import PoolSnapshot
from proxy.config.model import Address, Listen, Location, Server
from proxy.http2.connection import Connection
from proxy.http2.frames import ErrorCode
from proxy.relay.call import CallState, RelayStream
from proxy.relay.link import Link
from proxy.relay.relay import Relay
from tests.unit.frame_factory import REQUEST

RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """Client -- down core | relay | up core -- server, moved by ``pump``."""

    def __init__(
        self,
        *,
        stream_window: int = 1 << 20,
        read_timeout: float | None = 300.0,
        attach: bool = True,
        server_window: int | None = None,
    ) -> None:
        self.clock = Clock()
        self.eps = [Endpoint(Address("127.0.0.1", 1)), Endpoint(Address("127.0.0.1", 2))]
        pool = PoolSnapshot("u", tuple(self.eps), (), 1.0)
        self.relay = Relay({"u": pool}, self.clock)
        self.relay.connector = self
        self.auto_attach = attach
        self.waiting: list[tuple[Endpoint, RelayStream]] = []
        loc = Location("/", False, "u", read_timeout=read_timeout)
        srv = Server((Listen(Address("127.0.0.1", 0)),), (loc,))
        self.down = Link(
            Connection(
                client=False, stream_window=stream_window, connection_window=4 * stream_window
            ),
            server=srv,
        )
        self.down.core.initiate()
        self.up = Link(
            Connection(
                client=True, stream_window=stream_window, connection_window=4 * stream_window
            ),
            endpoint=self.eps[0],
        )
        self.up.core.initiate()
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.client.initiate_connection()
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.server.initiate_connection()
        if server_window is not None:
            self.server.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: server_window}
            )
        self.client_events: list[h2.events.Event] = []
        self.server_events: list[h2.events.Event] = []
        self.pump()

    def acquire(self, ep: Endpoint, rs: RelayStream, timeout: float) -> None:
        if self.auto_attach:
            self.relay.attach(rs, self.up)
        else:
            self.waiting.append((ep, rs))

    def pump(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            moved = False
            data = self.client.data_to_send()
            if data:
                moved = True
                self.relay.on_client_events(self.down, self.down.core.receive_data(data))
            data = self.down.core.take_output()
            if data:
                moved = True
                self.client_events += self.client.receive_data(data)
            data = self.up.core.take_output()
            if data:
                moved = True
                self.server_events += self.server.receive_data(data)
            data = self.server.data_to_send()
            if data:
                moved = True
                self.relay.on_upstream_events(self.up, self.up.core.receive_data(data))
            self.relay.drained(self.down)
            self.relay.drained(self.up)
            if not moved:
                return

    def of(self, side: list[h2.events.Event], kind: type) -> list:
        return [e for e in side if isinstance(e, kind)]


def test_unary_call_round_trip() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST)
    rig.client.send_data(1, b"\x00\x00\x00\x00\x01x", end_stream=True)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    assert req.headers == REQUEST
    assert (
        b"".join(e.data for e in rig.of(rig.server_events, h2.events.DataReceived))
        == b"\x00\x00\x00\x00\x01x"
    )
    rig.server.send_headers(req.stream_id, RESPONSE)
    rig.server.send_data(req.stream_id, b"\x00\x00\x00\x00\x01y")
    rig.server.send_headers(req.stream_id, [(b"grpc-status", b"0")], end_stream=True)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    assert resp.headers == RESPONSE
    (tr,) = rig.of(rig.client_events, h2.events.TrailersReceived)
    assert tr.headers == [(b"grpc-status", b"0")]
    assert not rig.relay.active and rig.eps[0].state.active == 0


def test_a_call_moves_from_connecting_to_streaming_to_done() -> None:
    rig = Rig(attach=False)
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    ep, rs = rig.waiting.pop()
    assert rs.state is CallState.CONNECTING and rs.endpoint is ep and rs.up is None
    rig.relay.attach(rs, rig.up)
    rig.pump()
    assert rs.state is CallState.STREAMING and rs.up_link is rig.up
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    rig.server.send_headers(req.stream_id, RESPONSE)
    rig.server.send_headers(req.stream_id, [(b"grpc-status", b"0")], end_stream=True)
    rig.pump()
    assert rs.state is CallState.DONE and rs.done and not rig.relay.active
    rig.relay.attach(rs, rig.up)  # a late attach of an ended call opens nothing
    rig.pump()
    assert len(rig.of(rig.server_events, h2.events.RequestReceived)) == 1


def test_trailers_only_response_passes_through() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    block = RESPONSE + [(b"grpc-status", b"5"), (b"grpc-message", b"nope")]
    rig.server.send_headers(req.stream_id, block, end_stream=True)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    assert resp.headers == block
    assert rig.of(rig.client_events, h2.events.StreamEnded)


def test_slow_reader_gets_backpressure_not_buffering() -> None:
    """The upstream may send only what the client's window can take plus one
    stream window parked in the proxy: the proxy's credit to the server stops."""
    window = 65535
    rig = Rig(stream_window=window)
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    rig.server.send_headers(req.stream_id, RESPONSE)
    sent = 0
    for _ in range(100):  # the server writes as fast as its window allows
        room = rig.server.local_flow_control_window(req.stream_id)
        if room <= 0:
            break
        chunk = min(room, 16384)
        rig.server.send_data(req.stream_id, b"z" * chunk)
        sent += chunk
        rig.pump()
    # The client never acknowledged anything (h2 does not auto-ack): the server
    # is stopped after the client's window (65535) plus one proxy window.
    assert sent <= 2 * window + 16384
    rs = next(iter(rig.relay.active))
    assert rs.response.size <= window
    # The client reads: credit flows back to the server.
    got = sum(len(e.data) for e in rig.of(rig.client_events, h2.events.DataReceived))
    rig.client.acknowledge_received_data(got, 1)
    rig.pump()
    assert rig.server.local_flow_control_window(req.stream_id) > 0


def test_trailers_wait_behind_buffered_data() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    rig.server.send_headers(req.stream_id, RESPONSE)
    for _ in range(5):
        rig.server.send_data(req.stream_id, b"q" * 16000)
    rig.server.send_headers(req.stream_id, [(b"grpc-status", b"0")], end_stream=True)
    rig.pump()
    received = sum(len(e.data) for e in rig.of(rig.client_events, h2.events.DataReceived))
    assert received == 65535  # the client's default window
    assert not rig.of(rig.client_events, h2.events.TrailersReceived)
    rig.client.increment_flow_control_window(1 << 20)
    rig.client.increment_flow_control_window(1 << 20, stream_id=1)
    rig.pump()
    received = sum(len(e.data) for e in rig.of(rig.client_events, h2.events.DataReceived))
    assert received == 80000
    assert rig.of(rig.client_events, h2.events.TrailersReceived)


def test_client_reset_cancels_upstream() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST)
    rig.pump()
    rig.client.reset_stream(1, ErrorCode.CANCEL)
    rig.pump()
    (reset,) = rig.of(rig.server_events, h2.events.StreamReset)
    assert reset.error_code == ErrorCode.CANCEL
    assert not rig.relay.active


def test_upstream_reset_after_headers_resets_client() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    rig.server.send_headers(req.stream_id, RESPONSE)
    rig.server.reset_stream(req.stream_id, ErrorCode.CANCEL)
    rig.pump()
    (reset,) = rig.of(rig.client_events, h2.events.StreamReset)
    assert reset.error_code == ErrorCode.CANCEL


def test_upstream_reset_before_headers_gives_grpc_status() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    rig.server.reset_stream(req.stream_id, ErrorCode.INTERNAL_ERROR)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    assert dict(resp.headers)[b"grpc-status"] == b"13"
    assert dict(resp.headers)[b"grpc-message"] == b"upstream reset the stream: INTERNAL_ERROR"


def test_refused_stream_is_retried_with_its_data() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST)
    rig.client.send_data(1, b"payload")
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    (rs,) = rig.relay.active
    assert rs.state is CallState.STREAMING and rs.up is not None and rs.up.id == 1
    rig.server.reset_stream(req.stream_id, ErrorCode.REFUSED_STREAM)
    rig.server_events.clear()
    rig.pump()
    (again,) = rig.of(rig.server_events, h2.events.RequestReceived)
    assert again.stream_id == 3
    assert rs.state is CallState.STREAMING and rs.up is not None and rs.up.id == 3
    assert rs.refusals == 1 and len(rs.tried) == 1  # the refusal is not held against it
    data = b"".join(
        e.data for e in rig.of(rig.server_events, h2.events.DataReceived) if e.stream_id == 3
    )
    assert data == b"payload"
    assert not rig.of(rig.client_events, h2.events.StreamReset)


def test_a_call_above_an_upstream_goaway_goes_back_for_another_stream() -> None:
    rig = Rig(attach=False)
    rig.client.send_headers(1, REQUEST)
    rig.client.send_data(1, b"payload")
    rig.pump()
    ep, rs = rig.waiting.pop()
    rig.relay.attach(rs, rig.up)
    rig.pump()
    assert rs.state is CallState.STREAMING and rs.replay == [b"payload"]
    rig.server.close_connection(last_stream_id=0)  # stream 1 was never processed
    rig.pump()
    ep2, rs2 = rig.waiting.pop()
    assert rs2 is rs and rs.state is CallState.CONNECTING and rs.endpoint is ep2
    assert rs.refusals == 1 and rs.up is None and sum(e.state.active for e in rig.eps) == 1
    assert not rig.of(rig.client_events, h2.events.ResponseReceived)
    assert not rig.of(rig.client_events, h2.events.StreamReset)


def test_upstream_lost_mid_stream_gives_unavailable() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    rig.server.send_headers(req.stream_id, RESPONSE)
    rig.server.send_data(req.stream_id, b"partial")
    rig.pump()
    rig.relay.upstream_lost(rig.up, "closed by peer")
    rig.pump()
    (tr,) = rig.of(rig.client_events, h2.events.TrailersReceived)
    assert dict(tr.headers)[b"grpc-status"] == b"14"
    assert rig.eps[0].state.fails == 1


def test_no_route_is_unimplemented() -> None:
    rig = Rig()
    rig.relay.pools.clear()
    rig.down.server = Server((), (Location("=/only.This/Method", True, "u"),))
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    assert dict(resp.headers)[b"grpc-status"] == b"12"


def test_wrong_content_type_is_http_415() -> None:
    rig = Rig()
    headers = [(k, b"text/plain" if k == b"content-type" else v) for k, v in REQUEST]
    rig.client.send_headers(1, headers, end_stream=True)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    assert dict(resp.headers)[b":status"] == b"415"
    body = b"".join(e.data for e in rig.of(rig.client_events, h2.events.DataReceived))
    assert body == b"content-type is not application/grpc\n", body
    assert dict(resp.headers)[b"content-length"] == str(len(body)).encode()
    assert rig.of(rig.client_events, h2.events.StreamEnded)


GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"localhost")]


def test_non_grpc_reply_body_respects_the_clients_window() -> None:
    """A GET gets 405 and a text body, one byte at a time when the client's
    window is one byte (what HTTP/2 conformance suites check)."""
    rig = Rig()
    rig.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
    rig.pump()
    rig.client.send_headers(1, GET, end_stream=True)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    assert dict(resp.headers)[b":status"] == b"405"
    length = int(dict(resp.headers)[b"content-length"])
    chunks = [e.data for e in rig.of(rig.client_events, h2.events.DataReceived)]
    assert chunks == [b"g"] and not rig.of(rig.client_events, h2.events.StreamEnded)
    for _ in range(length - 1):
        rig.client.increment_flow_control_window(1, stream_id=1)
        rig.pump()
    chunks = [e.data for e in rig.of(rig.client_events, h2.events.DataReceived)]
    assert all(len(c) == 1 for c in chunks)
    assert b"".join(chunks) == b"gRPC requires POST\n" and len(chunks) == length
    assert rig.of(rig.client_events, h2.events.StreamEnded)
    assert not rig.down.blocked and not rig.of(rig.client_events, h2.events.StreamReset)


def test_non_grpc_reply_lets_the_request_finish() -> None:
    """Not RST_STREAM NO_ERROR as for a gRPC refusal: the stream stays open for
    the rest of the request, so the client's later frames on it are judged by
    RFC 9113 (a second HEADERS without END_STREAM is a PROTOCOL_ERROR)."""
    rig = Rig()
    rig.client.send_headers(1, GET)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    assert dict(resp.headers)[b":status"] == b"405"
    assert rig.of(rig.client_events, h2.events.StreamEnded)
    assert not rig.of(rig.client_events, h2.events.StreamReset)
    rig.client.send_data(1, b"x" * 1000, end_stream=True)
    rig.pump()
    assert not rig.down.core.streams and not rig.down.blocked
    assert rig.down.core.recv_window + rig.down.core.owed == rig.down.core.local_connection_window


def test_non_grpc_reply_is_dropped_when_the_client_resets_it() -> None:
    rig = Rig()
    rig.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    rig.pump()
    rig.client.send_headers(1, GET, end_stream=True)
    rig.pump()
    assert rig.down.blocked
    rig.client.reset_stream(1, ErrorCode.CANCEL)
    rig.pump()
    assert not rig.down.blocked and not rig.down.core.streams
    rig.client.send_headers(3, REQUEST, end_stream=True)  # the connection carries on
    rig.pump()
    assert rig.of(rig.server_events, h2.events.RequestReceived)


def test_grpc_timeout_expiring_at_proxy_is_deadline_exceeded() -> None:
    rig = Rig()
    rig.client.send_headers(1, REQUEST + [(b"grpc-timeout", b"200m")])
    rig.pump()
    rig.clock.now = 0.3
    rig.relay.tick(rig.clock.now)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    assert dict(resp.headers)[b"grpc-status"] == b"4"
    (reset,) = rig.of(rig.server_events, h2.events.StreamReset)
    assert reset.error_code == ErrorCode.CANCEL


def test_idle_stream_times_out_but_data_resets_the_timer() -> None:
    rig = Rig(read_timeout=1.0)
    rig.client.send_headers(1, REQUEST)
    rig.pump()
    for t in (0.6, 1.2, 1.8):
        rig.clock.now = t
        rig.client.send_data(1, b"tick")
        rig.pump()
        rig.relay.tick(t)
    assert rig.relay.active
    rig.clock.now = 2.9
    rig.relay.tick(2.9)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    assert dict(resp.headers)[b"grpc-status"] == b"14"
    assert b"stream idle timeout" in dict(resp.headers)[b"grpc-message"]


def test_connect_failure_tries_next_endpoint_then_unavailable() -> None:
    rig = Rig(attach=False)
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    ep, rs = rig.waiting.pop()
    assert rs.state is CallState.CONNECTING
    rig.relay.connect_failed(rs, ep, "connection refused")
    ep2, rs2 = rig.waiting.pop()
    assert ep2 is not ep and rs2 is rs and rs.state is CallState.CONNECTING
    rig.relay.connect_failed(rs, ep2, "connection refused")
    rig.pump()
    assert rs.state is CallState.DONE
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    headers = dict(resp.headers)
    assert headers[b"grpc-status"] == b"14" and b"connection refused" in headers[b"grpc-message"]
    assert all(not e.available(0.0) for e in rig.eps)  # max_fails=1: both out


def test_client_that_never_reads_is_ended_after_send_timeout() -> None:
    rig = Rig()
    rig.relay.active.clear()
    loc = Location("/", False, "u", read_timeout=None, send_timeout=2.0)
    rig.down.server = Server((), (loc,))
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    rig.server.send_headers(req.stream_id, RESPONSE)
    for _ in range(6):  # more than the client's 65535-byte window
        rig.server.send_data(req.stream_id, b"w" * 16000)
    rig.pump()
    rig.clock.now = 1.0
    rig.relay.tick(1.0)
    assert rig.relay.active  # blocked for 1s: still within the send timeout
    rig.clock.now = 2.5
    rig.relay.tick(2.5)
    rig.pump()
    (tr,) = rig.of(rig.client_events, h2.events.TrailersReceived)
    assert dict(tr.headers)[b"grpc-status"] == b"14"
    assert b"send timeout" in dict(tr.headers)[b"grpc-message"]
    (reset,) = rig.of(rig.server_events, h2.events.StreamReset)
    assert reset.error_code == ErrorCode.CANCEL


def test_refused_stream_may_retry_the_same_endpoint_a_bounded_number_of_times() -> None:
    rig = Rig()
    rig.relay.pools["u"] = PoolSnapshot("u", (rig.eps[0],), (), 1.0)
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    for attempt in range(4):
        req = rig.of(rig.server_events, h2.events.RequestReceived)[-1]
        assert req.stream_id == 1 + 2 * attempt
        rig.server.reset_stream(req.stream_id, ErrorCode.REFUSED_STREAM)
        rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)  # after 3 retries
    assert dict(resp.headers)[b"grpc-status"] == b"14"
    assert len(rig.of(rig.server_events, h2.events.RequestReceived)) == 4


def test_request_bytes_dropped_after_a_complete_response_return_their_credit() -> None:
    """The server answers and resets while request DATA still waits in the
    proxy: that DATA is dropped, and the client's connection window gets its
    credit back (else every such call would shrink it for good)."""
    rig = Rig(stream_window=1 << 16, server_window=100)
    rig.client.send_headers(1, REQUEST)
    rig.client.send_data(1, b"u" * 15000)
    rig.client.send_data(1, b"u" * 15000)
    rig.pump()
    rs = next(iter(rig.relay.active))
    assert rs.request.size > 29000  # parked: the server allows 100 bytes
    (req,) = rig.of(rig.server_events, h2.events.RequestReceived)
    rig.server.send_headers(req.stream_id, RESPONSE)
    rig.server.send_headers(req.stream_id, [(b"grpc-status", b"0")], end_stream=True)
    rig.server.reset_stream(req.stream_id, ErrorCode.NO_ERROR)
    rig.pump()
    assert rig.of(rig.client_events, h2.events.TrailersReceived)
    core = rig.down.core
    assert core.recv_window + core.owed == core.local_connection_window
    assert not rig.up.blocked and not rig.relay.active


def _raw_into_proxy(rig: Rig, data: bytes) -> list:
    """Frames the h2 client would refuse to send, straight into the proxy."""
    from tests.unit.frame_factory import parse_frames

    rig.down.core.take_output()
    rig.relay.on_client_events(rig.down, rig.down.core.receive_data(data))
    return [
        (type(fr).__name__, getattr(fr, "error_code", None))
        for fr in parse_frames(rig.down.core.take_output())
    ]


def test_data_after_the_clients_rst_stream_is_stream_closed_after_a_reply() -> None:
    """h2spec 5.1/8, on a request the proxy answered itself: the stream was the
    client's to close, so DATA after its RST_STREAM is a STREAM_CLOSED error."""
    from tests.unit.frame_factory import FrameFactory

    rig = Rig()
    rig.client.send_headers(1, GET)
    rig.pump()
    ff = FrameFactory()
    frames = _raw_into_proxy(rig, ff.rst_stream(1, ErrorCode.CANCEL) + ff.data(1, b"x"))
    assert ("RstStreamFrame", ErrorCode.STREAM_CLOSED) in frames or (
        "GoAwayFrame",
        ErrorCode.STREAM_CLOSED,
    ) in frames, frames


def test_second_headers_without_end_stream_is_protocol_error_after_a_reply() -> None:
    """h2spec 8.1/1: trailers must end the stream, even on a request the proxy
    has already answered."""
    from tests.unit.frame_factory import FrameFactory

    rig = Rig()
    rig.client.send_headers(1, GET)
    rig.pump()
    frames = _raw_into_proxy(rig, FrameFactory().headers(1, [(b"x-trailer", b"1")]))
    assert ("RstStreamFrame", ErrorCode.PROTOCOL_ERROR) in frames or (
        "GoAwayFrame",
        ErrorCode.PROTOCOL_ERROR,
    ) in frames, frames


def _unavailable_message(rig: Rig) -> bytes:
    rig.client.send_headers(1, REQUEST, end_stream=True)
    rig.pump()
    (resp,) = rig.of(rig.client_events, h2.events.ResponseReceived)
    headers = dict(resp.headers)
    assert headers[b"grpc-status"] == b"14"
    return headers[b"grpc-message"]


def test_an_empty_pool_says_the_upstream_has_no_servers() -> None:
    """An etcd-fed upstream with nothing registered (or everything withdrawn)."""
    rig = Rig()
    rig.relay.pools["u"] = PoolSnapshot("u", (), (), 1.0)
    assert _unavailable_message(rig) == b"upstream u has no servers"


def test_an_empty_pool_with_subsets_says_the_upstream_has_no_servers() -> None:
    rig = Rig()
    rig.relay.pools["u"] = PoolSnapshot("u", (), (), 1.0, subset="version")
    assert _unavailable_message(rig) == b"upstream u has no servers"


def test_a_pool_whose_servers_are_all_down_has_no_healthy_upstream() -> None:
    rig = Rig()
    rig.eps = [replace(ep, down=True) for ep in rig.eps]  # a new snapshot's settings
    rig.relay.pools["u"] = PoolSnapshot("u", tuple(rig.eps), (), 1.0)
    assert _unavailable_message(rig) == b"no healthy upstream in u"
