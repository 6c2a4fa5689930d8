"""The HTTP/2 connection state machine of one side of the relay (sans-IO).

``receive_data(bytes) -> list[Event]`` parses frames, enforces RFC 9113 and
answers what is the connection's own business (SETTINGS ACK, PING ACK, stream
errors, GOAWAY). The ``send_*`` methods queue frames into ``out``; the driver
takes the bytes with ``take_output()`` and writes them once per batch.

Flow control is explicit (flow.py): DATA is acknowledged only when the driver
calls ``ack_data`` after forwarding it, so a slow reader on the far side slows
the sender on this side. Send windows are the caller's to respect
(``Stream.send_window`` and ``Connection.send_window``).

Who does what: stream.py decides stream states, floods.py counts what a peer
may send, header_block.py assembles header blocks, hpack_codec.py decodes
them, headers.py checks them. Frames are dispatched by type through a table
that also encodes what the connection awaits (its peer's first SETTINGS, or
the CONTINUATION of a header block).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

from proxy.http2 import frames as f
from proxy.http2.errors import (
    BAD_FRAME,
    HEADER_SIZE,
    H2ConnectionError,
    H2StreamError,
    calm,
)
from proxy.http2.events import (
    ConnectionFailed,
    DataReceived,
    Event,
    GoAwayReceived,
    HeadersReceived,
    Http1Received,
    PingAcked,
    SettingsReceived,
    StreamReset,
    WindowOpened,
)
from proxy.http2.floods import FloodGuard
from proxy.http2.flow import Window
from proxy.http2.header_block import HeaderBlockReader
from proxy.http2.headers import check_request, check_response, check_trailers
from proxy.http2.hpack_codec import (
    TABLE_SIZE_ZERO,
    HeaderBlock,
    HeaderDecodeError,
    HeaderDecoder,
    HeaderList,
    HeaderListTooLarge,
    encode_headers,
)
from proxy.http2.keepalive import PingPolicy
from proxy.http2.limits import CLIENT_LIMITS, TRUSTED_LIMITS, Http2Limits
from proxy.http2.stream import (
    CLIENT_ROWS,
    ENDED,
    ON_UNKNOWN,
    RECEIVING,
    SERVER_ROWS,
    UNANSWERED,
    Refusal,
    Stream,
    StreamState,
)

__all__ = ["Connection", "Stream"]

E = f.ErrorCode
_TOO_LARGE = "frame larger than SETTINGS_MAX_FRAME_SIZE"
_RESET_MEMORY: Final = 1024  # closed streams remembered (those we reset: late frames ignored)

# Hot-path aliases: a global int or member is cheaper than an enum class attribute.
_IDLE = StreamState.IDLE
_CLOSED = StreamState.CLOSED
_RESET = StreamState.RESET
_IMPLICITLY_CLOSED = StreamState.IMPLICITLY_CLOSED
# ... and the frame types and flags of the per-frame paths (Final: constants
# to the compiled build).
_DATA: Final = f.DATA
_HEADERS: Final = f.HEADERS
_END_STREAM: Final = f.END_STREAM
_END_HEADERS: Final = f.END_HEADERS
_PADDED: Final = f.PADDED
_END_HEADERS_STREAM: Final = f.END_HEADERS | f.END_STREAM
# A HEADERS frame with only END_HEADERS of these is its block, whole and bare.
_BLOCK_FLAGS: Final = f.END_HEADERS | f.PADDED | f.PRIORITY_FLAG
_pack_header = f.pack_header


class Connection(Window):
    """``client=True`` for upstream connections (we open streams), else server.
    As a ``Window`` (flow.py), it holds what the peer may send on the whole
    connection.

    ``limits`` bound what the peer may send (default: ``CLIENT_LIMITS`` for
    the server role, none for the client role); ``max_header_list_size``
    overrides ``limits.max_header_size``. ``clock`` is read only when a flood
    counter passes its limit."""

    def __init__(
        self,
        client: bool,
        *,
        max_concurrent_streams: int = 128,
        stream_window: int = 1 << 20,
        connection_window: int = 8 << 20,
        max_frame_size: int = f.DEFAULT_MAX_FRAME_SIZE,
        max_header_list_size: int | None = None,
        limits: Http2Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limits is None:
            limits = TRUSTED_LIMITS if client else CLIENT_LIMITS
        if max_header_list_size is None:
            max_header_list_size = limits.max_header_size
        if not f.DEFAULT_MAX_FRAME_SIZE <= max_frame_size <= 2**24 - 1:
            raise ValueError("max_frame_size must be within 16384 and 2^24-1")
        self.client = client
        self.streams: dict[int, Stream] = {}
        self.out: list[bytes | memoryview] = []
        self.out_size = 0
        self.closed = False  # a connection error was found: set by _close only
        self.close_reason = ""
        self.close_kind = ""  # protocol error kind (errors.py) when we failed it
        # Our settings: what the peer may send us.
        self.local_max_concurrent = max_concurrent_streams
        self.local_stream_window = stream_window
        self.local_connection_window = connection_window
        self.local_max_frame_size = max_frame_size
        Window.__init__(self, connection_window)
        # The peer's settings: what we may send.
        self.peer_initial_window = f.DEFAULT_WINDOW
        self.peer_max_frame_size = f.DEFAULT_MAX_FRAME_SIZE
        self.peer_max_concurrent = 2**31 - 1
        self.send_window = f.DEFAULT_WINDOW
        self.last_peer_stream = 0
        self.next_stream_id = 1
        self.goaway_received: int | None = None
        self.goaway_sent = False
        # Server role: the too_many_pings policy (keepalive.PingPolicy), if any.
        self.ping_policy: PingPolicy | None = None
        self.last_ping_ack = b""  # opaque of the last PING ACK (drain, keepalive)
        self.ping_acks = 0  # PING ACKs received: the driver wakes its timers on a change
        self.settings_received = False
        self.limits = limits
        # The stream table of our role, a row per input (stream.py).
        rows = CLIENT_ROWS if client else SERVER_ROWS
        self._opened, self._opened_ended = rows.opened, rows.opened_ended
        self._send_headers, self._send_data = rows.send_headers, rows.send_data
        self._send_end, self._recv_end = rows.send_end, rows.recv_end
        self._recv_headers, self._recv_trailers = rows.recv_headers, rows.recv_trailers
        self._refuse_headers, self._refuse_data = rows.refuse_headers, rows.refuse_data
        self._peer_parity = 0 if client else 1
        self._decoder = HeaderDecoder(max_header_list_size)
        self._blocks = HeaderBlockReader(max_header_list_size, limits.max_continuation_frames)
        self._floods = FloodGuard(limits, max_concurrent_streams, clock)
        self._dispatch = _AWAIT_SETTINGS
        self._buf = b""
        self._preface_pending = not client
        self._initiated = False
        self._table_size_sent = False
        # Streams closed lately, by id: CLOSED, or RESET by us (their late
        # frames are ignored, RFC 9113 section 5.1), oldest first.
        self._ended: dict[int, StreamState] = {}
        self._ended_order: deque[int] = deque()

    # ------------------------------------------------------------------ output

    def initiate(self) -> None:
        """Queue the connection preface: our SETTINGS and connection window.
        A server calls it once the client's preface has arrived (receive_data
        does), so a client speaking HTTP/1.1 gets a clean HTTP/1.1 reply."""
        if self._initiated:
            return
        self._initiated = True
        out = self.out
        if self.client:
            out.append(f.PREFACE)
        values = {
            f.SETTINGS_MAX_CONCURRENT_STREAMS: self.local_max_concurrent,
            f.SETTINGS_INITIAL_WINDOW_SIZE: self.local_stream_window,
            f.SETTINGS_MAX_HEADER_LIST_SIZE: self._blocks.max_size,
            # Always stated, though 16384 is the default: what we accept is
            # explicit. 16 KiB frames fit the 1 MiB stream window 64 times, so
            # a window never ends in a frame the peer may not send.
            f.SETTINGS_MAX_FRAME_SIZE: self.local_max_frame_size,
        }
        if self.client:
            values[f.SETTINGS_ENABLE_PUSH] = 0
        out.append(f.settings(values))
        extra = self.local_connection_window - f.DEFAULT_WINDOW
        if extra > 0:
            out.append(f.window_update(0, extra))
        self.out_size += sum(len(b) for b in out)

    def take_output(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        self.out_size = 0
        self._floods.output_taken()
        return data

    def _control(self, data: bytes) -> None:
        """Queue a frame that answers the peer (ACK, RST_STREAM)."""
        self._floods.control_queued()
        self.out.append(data)
        self.out_size += len(data)

    def _emit(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)

    def _send_header_block(self, sid: int, headers: HeaderList, end_stream: bool) -> None:
        # A relayed block was decoded here: its encoding is kept with it.
        block = headers.encoded if type(headers) is HeaderBlock else encode_headers(headers)
        if not self._table_size_sent:
            self._table_size_sent = True
            block = TABLE_SIZE_ZERO + block
        n = len(block)
        if n <= self.peer_max_frame_size:  # f.headers without CONTINUATION, inlined
            flags = _END_HEADERS_STREAM if end_stream else _END_HEADERS
            frame = _pack_header((n << 8) | _HEADERS, flags, sid) + block
        else:
            frame = f.headers(sid, block, end_stream, self.peer_max_frame_size)
        self.out.append(frame)
        self.out_size += len(frame)
        self._floods.headers_sent += 1

    def can_open_stream(self) -> bool:
        """Client role: room for one more stream. Not before the peer's first
        SETTINGS, so its MAX_CONCURRENT_STREAMS is known, not guessed."""
        return (
            self.settings_received
            and not self.closed
            and self.goaway_received is None
            and not self.goaway_sent
            and len(self.streams) < self.peer_max_concurrent
            and self.next_stream_id <= f.MAX_STREAM_ID
        )

    def open_stream(self, headers: HeaderList, end_stream: bool) -> Stream:
        """Client role: start a request. The caller checked ``can_open_stream``."""
        sid = self.next_stream_id
        self.next_stream_id += 2
        state = self._opened_ended if end_stream else self._opened
        s = Stream(sid, self.peer_initial_window, self.local_stream_window, state)
        self.streams[sid] = s
        self._send_header_block(sid, headers, end_stream)
        return s

    def send_headers(self, s: Stream, headers: HeaderList, end_stream: bool) -> None:
        """Ignored on a stream closed for sending."""
        state = self._send_headers[s.state]
        if state is None:
            return
        self._send_header_block(s.id, headers, end_stream)
        if end_stream:  # as in send_data
            ended = self._send_end[state]
            if ended is not None:  # always, after SEND_HEADERS
                state = ended
                if ended is _CLOSED:
                    self._forget(s.id, _CLOSED)
        s.state = state

    def send_data(self, s: Stream, data: bytes | memoryview, end_stream: bool) -> None:
        """Queue DATA within the send windows (the caller's duty to check).
        Ignored on a stream closed for sending."""
        if self._send_data[s.state] is None:
            return
        n = len(data)
        mfs = self.peer_max_frame_size
        out = self.out
        flags = _END_STREAM if end_stream else 0
        floods = self._floods
        if n <= mfs:
            out.append(_pack_header((n << 8) | _DATA, flags, s.id))
            if n:
                out.append(data)
            self.out_size += n + 9
            floods.data_frames_sent += 1
        else:
            pos = 0
            while pos < n:
                chunk = data[pos : pos + mfs]
                pos += len(chunk)
                out.append(f.frame_header(len(chunk), f.DATA, flags if pos >= n else 0, s.id))
                out.append(chunk)
                self.out_size += len(chunk) + 9
                floods.data_frames_sent += 1
        s.send_window -= n
        self.send_window -= n
        if end_stream:
            state = self._send_end[s.state]
            if state is not None:  # always, after SEND_DATA
                s.state = state
                if state is _CLOSED:
                    self._forget(s.id, _CLOSED)

    def reset_stream(self, s: Stream, code: int) -> None:
        if s.state in ENDED:
            return
        self._emit(f.rst_stream(s.id, code))
        self._end(s, _RESET)

    def ack_data(self, s: Stream, n: int) -> None:
        """``n`` flow-controlled bytes of ``s`` were forwarded: return the credit.
        WINDOW_UPDATEs are sent once a quarter of a window is owed."""
        if n <= 0:
            return
        # Window.credit's common case (a debt below the threshold) inlined
        # for both windows: once per DATA frame relayed.
        owed = self.owed + n
        if owed < self.credit_threshold:
            self.owed = owed
        else:
            self._emit(f.window_update(0, self.credit(n)))
        if s.state in RECEIVING:  # else the peer sends no more: no stream credit needed
            owed = s.owed + n
            if owed < s.credit_threshold:
                s.owed = owed
            else:
                self._emit(f.window_update(s.id, s.credit(n)))

    def _credit_connection(self, n: int) -> None:
        """Return the connection credit of ``n`` bytes not handed to the driver."""
        increment = self.credit(n)
        if increment:
            self._emit(f.window_update(0, increment))

    def ping(self, opaque: bytes) -> None:
        self.initiate()
        self._emit(f.ping(opaque))

    def send_goaway(
        self, code: int = E.NO_ERROR, last_stream_id: int | None = None, debug: bytes = b""
    ) -> None:
        self.initiate()  # our SETTINGS must be the first frame, even before a GOAWAY
        last = self.last_peer_stream if last_stream_id is None else last_stream_id
        self._emit(f.goaway(last, code, debug))
        self.goaway_sent = True

    def announce_goaway(self) -> None:
        """Phase one of a graceful close: GOAWAY with last-stream-id 2^31-1
        ("stop opening streams soon"); streams keep being accepted until the
        real GOAWAY (``send_goaway``), sent once a PING round trip shows the
        peer has seen this one."""
        self.initiate()
        self._emit(f.goaway(f.MAX_STREAM_ID, E.NO_ERROR, b""))

    # ----------------------------------------------------------- stream ends

    def _end(self, s: Stream, state: StreamState) -> None:
        """``s`` ends abnormally: reset by us (RESET), by the peer or by its
        GOAWAY (CLOSED)."""
        s.end(state)
        self._forget(s.id, state)

    def _forget(self, sid: int, state: StreamState) -> None:
        """Stream ``sid`` ended (CLOSED) or we reset it (RESET): drop its
        Stream, if any, and remember how it ended, for its late frames."""
        self.streams.pop(sid, None)
        ended = self._ended
        if sid in ended:
            if state is _RESET:
                ended[sid] = _RESET
            return
        ended[sid] = state
        order = self._ended_order
        order.append(sid)
        if len(order) > _RESET_MEMORY:
            ended.pop(order.popleft(), None)

    def _state_of(self, sid: int) -> StreamState:
        """The state of a stream id without a Stream."""
        if (sid & 1) == self._peer_parity:
            if sid > self.last_peer_stream:
                return _IDLE
        elif sid >= self.next_stream_id:
            return _IDLE
        return self._ended.get(sid, _IMPLICITLY_CLOSED)

    def _on_unknown_stream(self, ftype: int, sid: int, state: StreamState | None = None) -> None:
        """A frame on a stream id without a Stream: raise what it earns, if anything."""
        refusal = ON_UNKNOWN[ftype, self._state_of(sid) if state is None else state]
        if refusal is not None:
            raise _error(refusal, sid)

    # ------------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self.closed:
            return events
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        self._floods.new_batch(self.last_peer_stream)
        if self._preface_pending:
            pos = self._preface(data, events)
            if pos < 0:
                return events
        try:
            pos = self._frames(data, pos, events)
        except H2ConnectionError as e:
            self._fail(events, e.code, e.reason, e.kind)
            return events
        if pos < len(data):
            self._buf = data[pos:]
            if len(self._buf) > self.local_max_frame_size + 9:
                self._fail(events, E.FRAME_SIZE_ERROR, _TOO_LARGE)
        return events

    def _preface(self, data: bytes, events: list[Event]) -> int:
        """Server role: where the frames begin after the client's preface, or
        -1 (wait for more, or the connection failed)."""
        if len(data) < len(f.PREFACE):
            if f.PREFACE.startswith(data):
                self._buf = data
                return -1
        elif data.startswith(f.PREFACE):
            self._preface_pending = False
            self.initiate()
            return len(f.PREFACE)
        self._close()
        if _looks_like_http1(data):
            self.close_reason = "HTTP/1.x request on an HTTP/2 port"
            events.append(Http1Received())
        else:
            self._fail(events, E.PROTOCOL_ERROR, "invalid connection preface")
        return -1

    def _fail(self, events: list[Event], code: int, reason: str, kind: str = BAD_FRAME) -> None:
        if not self.closed or not self.goaway_sent:
            self._emit(f.goaway(self.last_peer_stream, code, reason.encode()[:256]))
            self.goaway_sent = True
        self._close()
        self.close_reason = reason
        self.close_kind = kind
        events.append(ConnectionFailed(code, reason, kind))

    def _close(self) -> None:
        self.closed = True
        self.withhold_credit()  # no WINDOW_UPDATE after our GOAWAY

    def _frames(self, data: bytes, pos: int, events: list[Event]) -> int:
        n = len(data)
        mv = memoryview(data)
        max_size = self.local_max_frame_size
        unpack = f.unpack_header
        while n - pos >= 9:
            lt, flags, sid = unpack(data, pos)
            length = lt >> 8
            if length > max_size:
                raise H2ConnectionError(E.FRAME_SIZE_ERROR, _TOO_LARGE)
            end = pos + 9 + length
            if end > n:
                break
            try:
                self._dispatch[lt & 0xFF](
                    self, sid & 0x7FFFFFFF, flags, data, mv, pos + 9, length, events
                )
            except H2StreamError as e:
                self._stream_error(e, events)
            pos = end
            if self.closed:
                break
        return pos

    def _stream_error(self, e: H2StreamError, events: list[Event]) -> None:
        self._control(f.rst_stream(e.stream_id, e.code))
        s = self.streams.get(e.stream_id)
        if s is None:
            self._forget(e.stream_id, _RESET)
            return
        answered = s.state not in UNANSWERED
        self._end(s, _RESET)
        events.append(StreamReset(s, e.code, remote=False))
        if not self.client and not answered:
            self._floods.early_reset(self.last_peer_stream)

    # ---------------------------------------------------------- frame handlers
    # One per frame type, all alike: (sid, flags, data, mv, start, length,
    # events); the payload is data[start : start + length].

    def _on_data(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        if sid == 0:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "DATA on stream 0")
        if flags & _PADDED:
            if length < 1 or data[start] >= length:
                raise H2ConnectionError(E.PROTOCOL_ERROR, "bad DATA padding")
            payload = mv[start + 1 : start + length - data[start]]
        else:
            payload = mv[start : start + length]
        end_stream = flags & _END_STREAM
        if not payload and not end_stream:
            self._floods.empty_frame("empty DATA frame flood")
        self.recv_window -= length
        if self.recv_window < 0:
            raise H2ConnectionError(E.FLOW_CONTROL_ERROR, "connection window exceeded")
        s = self.streams.get(sid)
        if s is None:
            self._credit_connection(length)
            self._on_unknown_stream(f.DATA, sid)
            return
        refusal = self._refuse_data[s.state]
        if refusal is not None:
            self._credit_connection(length)
            raise _error(refusal, sid)
        s.recv_window -= length
        if s.recv_window < 0:
            self._credit_connection(length)
            raise H2StreamError(sid, E.FLOW_CONTROL_ERROR, "stream window exceeded")
        size = len(payload)
        if size != length:
            self.ack_data(s, length - size)  # the padding
        expected = s.expected_length
        if expected is not None:
            self._count_length(s, expected, size, end_stream)
        if end_stream:
            state = self._recv_end[s.state]
            if state is not None:  # always, after RECV_DATA
                s.state = state
                if state is _CLOSED:
                    self._forget(s.id, _CLOSED)
        events.append(DataReceived(s, payload, size, bool(end_stream)))

    def _count_length(self, s: Stream, expected: int, size: int, end_stream: int) -> None:
        """DATA against the message's content-length."""
        s.received_length += size
        if s.received_length > expected or (end_stream and s.received_length != expected):
            self._credit_connection(size)
            raise H2StreamError(s.id, E.PROTOCOL_ERROR, "content-length mismatch")

    def _on_headers(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        if sid == 0:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "HEADERS on stream 0")
        blocks = self._blocks
        if flags & _BLOCK_FLAGS == _END_HEADERS and length <= blocks.max_size:
            block: bytes | None = data[start : start + length]  # a whole block, as is
        else:  # padding, priority, CONTINUATION to come, or too large
            block = blocks.headers(sid, flags, data, start, length)
        if block is None:
            self._dispatch = _AWAIT_CONTINUATION
        else:
            self._on_header_block(sid, flags, block, events)
        if (
            flags & f.PRIORITY_FLAG
            and (f.unpack_u32(data, start + (flags & f.PADDED and 1))[0] & 0x7FFFFFFF) == sid
        ):
            raise H2StreamError(sid, E.PROTOCOL_ERROR, "stream depends on itself")

    def _on_continuation(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        block = self._blocks.continuation(sid, flags, data, start, length)
        if block is not None:
            self._dispatch = _READY
            self._on_header_block(sid, self._blocks.flags, block, events)

    def _on_header_block(self, sid: int, flags: int, block: bytes, events: list[Event]) -> None:
        end_stream = bool(flags & _END_STREAM)
        decoder = self._decoder
        headers = decoder.cache.get(block)  # most blocks: a block seen before
        if headers is None:
            try:
                headers = decoder.decode(block)
            except HeaderDecodeError as e:
                raise H2ConnectionError(E.COMPRESSION_ERROR, f"HPACK: {e}") from None
            except HeaderListTooLarge:
                raise calm("header list larger than http2_max_header_size", HEADER_SIZE) from None
        s = self.streams.get(sid)
        if s is None:
            if not self.client and sid & 1 and sid > self.last_peer_stream:  # idle: opened
                self._new_request(sid, headers, end_stream, events)
            else:
                # What we remember first: a HEADERS frame we reset at once (a
                # stream error in the frame itself) opened its stream, though
                # its id may still look idle, and its block came later.
                self._on_unknown_stream(f.HEADERS, sid, self._ended.get(sid))
            return
        state = s.state
        after = self._recv_headers[state]
        if after is None:
            raise _error(self._refuse_headers[state], sid)
        trailers = self._recv_trailers[state]
        if not trailers:
            if self._check_response(s, headers, end_stream):
                return  # informational responses are not relayed
        else:
            err = headers.check(check_trailers) if end_stream else "trailers without END_STREAM"
            if (
                err is None
                and s.expected_length is not None
                and (s.received_length != s.expected_length)
            ):
                err = "content-length mismatch"
            if err:
                raise H2StreamError(sid, E.PROTOCOL_ERROR, err)
        state = after
        if end_stream:  # as in _on_data
            ended = self._recv_end[state]
            if ended is not None:  # always, after RECV_HEADERS
                state = ended
                if ended is _CLOSED:
                    self._forget(s.id, _CLOSED)
        s.state = state
        events.append(HeadersReceived(s, headers, end_stream, trailers))

    def _check_response(self, s: Stream, headers: HeaderBlock, end_stream: bool) -> bool:
        """A client's first HEADERS of a stream; True for a 1xx response."""
        err = headers.check(check_response)
        if err:
            raise H2StreamError(s.id, E.PROTOCOL_ERROR, err)
        if headers[0][1][:1] == b"1":
            if end_stream:
                raise H2StreamError(s.id, E.PROTOCOL_ERROR, "END_STREAM on 1xx")
            return True
        s.expected_length = headers.content_length
        return False

    def _new_request(
        self, sid: int, headers: HeaderBlock, end_stream: bool, events: list[Event]
    ) -> None:
        self.last_peer_stream = sid
        floods = self._floods
        floods.new_stream(sid)
        if self.goaway_sent:
            self._refuse(sid, E.REFUSED_STREAM)
            return
        if len(self.streams) >= self.local_max_concurrent:
            self._refuse(sid, E.REFUSED_STREAM)
            floods.early_reset(self.last_peer_stream)
            return
        err = headers.check(check_request)
        cl = headers.content_length if err is None else None
        if err is None and cl is not None and (cl < 0 or (end_stream and cl != 0)):
            err = "bad content-length"
        if err:
            self._refuse(sid, E.PROTOCOL_ERROR)
            floods.early_reset(self.last_peer_stream)
            return
        policy = self.ping_policy
        if policy is not None:
            policy.strikes = 0  # a new call: PINGs so far were no abuse
        state = self._opened_ended if end_stream else self._opened
        s = Stream(sid, self.peer_initial_window, self.local_stream_window, state)
        s.expected_length = cl
        self.streams[sid] = s
        events.append(HeadersReceived(s, headers, end_stream, False))

    def _refuse(self, sid: int, code: int) -> None:
        """Reset a new stream at once."""
        self._control(f.rst_stream(sid, code))
        self._forget(sid, _RESET)

    def _on_window_update(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        if length != 4:
            raise H2ConnectionError(E.FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        self._floods.window_update(((self.last_peer_stream + 1) >> 1) + (self.next_stream_id >> 1))
        incr = f.unpack_u32(data, start)[0] & 0x7FFFFFFF
        if sid == 0:
            if incr == 0:
                raise H2ConnectionError(E.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += incr
            if self.send_window > f.MAX_WINDOW:
                raise H2ConnectionError(E.FLOW_CONTROL_ERROR, "connection window overflow")
            events.append(WindowOpened(None))
            return
        s = self.streams.get(sid)
        if s is None:
            self._on_unknown_stream(f.WINDOW_UPDATE, sid)
            return
        if incr == 0:
            raise H2StreamError(sid, E.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        s.send_window += incr
        if s.send_window > f.MAX_WINDOW:
            raise H2StreamError(sid, E.FLOW_CONTROL_ERROR, "stream window overflow")
        events.append(WindowOpened(s))

    def _on_rst_stream(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        if sid == 0:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if length != 4:
            raise H2ConnectionError(E.FRAME_SIZE_ERROR, "RST_STREAM length")
        s = self.streams.get(sid)
        if s is None:
            self._on_unknown_stream(f.RST_STREAM, sid)
            self._floods.late_reset()
            return
        answered = s.state not in UNANSWERED
        # Closed, not "reset by us": the peer knows, so its later frames
        # there are STREAM_CLOSED errors (RFC 9113 section 5.1), not ignored.
        self._end(s, _CLOSED)
        events.append(StreamReset(s, f.unpack_u32(data, start)[0], remote=True))
        if not self.client and not answered:
            self._floods.early_reset(self.last_peer_stream)

    def _on_settings(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        if sid != 0:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if length:
                raise H2ConnectionError(E.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        if length % 6:
            raise H2ConnectionError(E.FRAME_SIZE_ERROR, "SETTINGS length")
        self._floods.settings()
        self.settings_received = True
        self._dispatch = _READY
        grew = False
        for pos in range(start, start + length, 6):
            apply = _SETTINGS.get((data[pos] << 8) | data[pos + 1])
            if apply is not None and apply(self, f.unpack_u32(data, pos + 2)[0]):
                grew = True
        self._control(f.SETTINGS_ACK)
        # Always an event: a peer's first SETTINGS may come alone (grpc-js,
        # grpc-go), and it is what lets waiting calls open their streams.
        events.append(SettingsReceived())
        if grew:
            events.append(WindowOpened(None))

    # The peer's settings, one function each: True when send windows grew.

    def _set_initial_window(self, value: int) -> bool:
        if value > f.MAX_WINDOW:
            raise H2ConnectionError(E.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
        delta = value - self.peer_initial_window
        self.peer_initial_window = value
        for s in self.streams.values():
            s.send_window += delta
            if s.send_window > f.MAX_WINDOW:
                raise H2ConnectionError(E.FLOW_CONTROL_ERROR, "stream window overflow")
        return delta > 0

    def _set_max_frame_size(self, value: int) -> bool:
        if not f.DEFAULT_MAX_FRAME_SIZE <= value <= 2**24 - 1:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE")
        self.peer_max_frame_size = value
        return False

    def _set_max_concurrent_streams(self, value: int) -> bool:
        self.peer_max_concurrent = value
        return False

    def _set_enable_push(self, value: int) -> bool:
        if value > 1 or (self.client and value):
            raise H2ConnectionError(E.PROTOCOL_ERROR, "bad ENABLE_PUSH")
        return False

    def _set_enable_connect_protocol(self, value: int) -> bool:
        if value > 1:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "bad ENABLE_CONNECT_PROTOCOL")
        return False

    def _on_ping(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        if sid != 0:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "PING on a stream")
        if length != 8:
            raise H2ConnectionError(E.FRAME_SIZE_ERROR, "PING length")
        self._floods.ping()
        opaque = data[start : start + 8]
        if flags & f.ACK:
            self.last_ping_ack = opaque
            self.ping_acks += 1
            events.append(PingAcked(opaque))
            return
        if self.ping_policy is not None and self.ping_policy.on_ping(bool(self.streams)):
            raise calm("too_many_pings")
        self._control(f.ping(opaque, ack=True))

    def _on_priority(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        if sid == 0:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if length != 5:
            raise H2StreamError(sid, E.FRAME_SIZE_ERROR, "PRIORITY length")
        self._floods.priority()
        if (f.unpack_u32(data, start)[0] & 0x7FFFFFFF) == sid:
            raise H2StreamError(sid, E.PROTOCOL_ERROR, "stream depends on itself")

    def _on_goaway(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        if sid != 0:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "GOAWAY on a stream")
        if length < 8:
            raise H2ConnectionError(E.FRAME_SIZE_ERROR, "GOAWAY length")
        last = f.unpack_u32(data, start)[0] & 0x7FFFFFFF
        code = f.unpack_u32(data, start + 4)[0]
        self.goaway_received = (
            last if self.goaway_received is None else min(last, self.goaway_received)
        )
        events.append(GoAwayReceived(last, code, bytes(data[start + 8 : start + length])))
        if self.client:
            # Streams above last_stream_id were never processed: safe to retry.
            for s in [s for s in self.streams.values() if s.id > last]:
                self._end(s, _CLOSED)
                events.append(StreamReset(s, E.REFUSED_STREAM, remote=True))

    def _on_push_promise(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        raise H2ConnectionError(E.PROTOCOL_ERROR, "PUSH_PROMISE is not accepted")

    def _on_unknown_frame(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        """Unknown frame types are ignored (RFC 9113 section 4.1), counted."""
        self._floods.empty_frame("unknown/empty frame flood")

    def _not_settings(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        raise H2ConnectionError(E.PROTOCOL_ERROR, "first frame is not SETTINGS")

    def _not_continuation(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        raise H2ConnectionError(E.PROTOCOL_ERROR, "expected CONTINUATION")

    def _unexpected_continuation(
        self,
        sid: int,
        flags: int,
        data: bytes,
        mv: memoryview,
        start: int,
        length: int,
        events: list[Event],
    ) -> None:
        raise H2ConnectionError(E.PROTOCOL_ERROR, "unexpected CONTINUATION")


def _error(refusal: Refusal | None, sid: int) -> Exception:
    """The error to raise for a refused frame on stream ``sid``."""
    if refusal is None:  # not in the table: a state no frame reaches
        return H2ConnectionError(E.INTERNAL_ERROR, f"no transition for stream {sid}")
    reason = refusal.reason.format(sid=sid)
    if refusal.connection:
        return H2ConnectionError(refusal.code, reason)
    return H2StreamError(sid, refusal.code, reason)


Handler = Callable[[Connection, int, int, bytes, memoryview, int, int, list[Event]], None]


def _table(known: dict[int, Handler], other: Handler) -> tuple[Handler, ...]:
    """Handlers indexed by frame type (0-255)."""
    return tuple(known.get(t, other) for t in range(256))


# What the connection does with each frame type, by what it awaits.
_READY = _table(
    {
        f.DATA: Connection._on_data,
        f.HEADERS: Connection._on_headers,
        f.PRIORITY: Connection._on_priority,
        f.RST_STREAM: Connection._on_rst_stream,
        f.SETTINGS: Connection._on_settings,
        f.PUSH_PROMISE: Connection._on_push_promise,
        f.PING: Connection._on_ping,
        f.GOAWAY: Connection._on_goaway,
        f.WINDOW_UPDATE: Connection._on_window_update,
        f.CONTINUATION: Connection._unexpected_continuation,
    },
    Connection._on_unknown_frame,
)
# The peer's preface must be a SETTINGS frame (RFC 9113 section 3.4).
_AWAIT_SETTINGS = _table({f.SETTINGS: Connection._on_settings}, Connection._not_settings)
# A header block is a contiguous sequence of frames (RFC 9113 section 4.3).
_AWAIT_CONTINUATION = _table(
    {f.CONTINUATION: Connection._on_continuation}, Connection._not_continuation
)

_SETTINGS: dict[int, Callable[[Connection, int], bool]] = {
    f.SETTINGS_INITIAL_WINDOW_SIZE: Connection._set_initial_window,
    f.SETTINGS_MAX_FRAME_SIZE: Connection._set_max_frame_size,
    f.SETTINGS_MAX_CONCURRENT_STREAMS: Connection._set_max_concurrent_streams,
    f.SETTINGS_ENABLE_PUSH: Connection._set_enable_push,
    f.SETTINGS_ENABLE_CONNECT_PROTOCOL: Connection._set_enable_connect_protocol,
}


def _looks_like_http1(data: bytes) -> bool:
    head = data[:8]
    return (
        any(
            head.startswith(m)
            for m in (
                b"GET ",
                b"POST ",
                b"PUT ",
                b"HEAD ",
                b"DELETE ",
                b"OPTIONS",
                b"PATCH ",
                b"CONNECT ",
                b"TRACE ",
            )
        )
        and b"HTTP/2.0" not in data[:64]
    )
