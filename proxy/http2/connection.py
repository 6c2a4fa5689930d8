"""The HTTP/2 connection state machine of one side of the relay (sans-IO).

``receive_data(bytes) -> list[Event]`` parses frames, enforces RFC 9113 and
answers what is the connection's own business (SETTINGS ACK, PING ACK, stream
errors, GOAWAY). The ``send_*`` methods queue frames into ``out``; the driver
takes the bytes with ``take_output()`` and writes them once per batch.

Flow control is explicit: DATA is acknowledged only when the driver calls
``ack_data`` after forwarding it, so a slow reader on the far side slows the
sender on this side. Send windows are the caller's to respect
(``Stream.send_window`` and ``Connection.send_window``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from proxy.http2 import frames as f
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
from proxy.http2.floods import BAD_FRAME, FLOOD, HEADER_SIZE, RAPID_RESET, RateLimit, ResetWatch
from proxy.http2.headers import check_request, check_response, check_trailers, content_length
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

E = f.ErrorCode
_TOO_LARGE = "frame larger than SETTINGS_MAX_FRAME_SIZE"
_RESET_MEMORY = 1024  # streams we reset, whose late frames are ignored


class Stream:
    """One stream's state. ``relay`` is the driver's; the core never reads it."""

    __slots__ = (
        "id",
        "send_window",
        "recv_window",
        "owed",
        "local_closed",
        "remote_closed",
        "headers_received",
        "expected_length",
        "received_length",
        "closed",
        "responded",
        "relay",
    )

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.id = stream_id
        self.send_window = send_window
        self.recv_window = recv_window
        self.owed = 0  # acknowledged but not yet announced in a WINDOW_UPDATE
        self.local_closed = False
        self.remote_closed = False
        self.headers_received = False
        self.expected_length: int | None = None
        self.received_length = 0
        self.closed = False
        self.responded = False  # we sent HEADERS (server role: the response began)
        self.relay: object = None


class _ConnectionError(Exception):
    def __init__(self, code: int, reason: str, kind: str = BAD_FRAME) -> None:
        self.code = code
        self.reason = reason
        self.kind = kind


def _calm(reason: str, kind: str = FLOOD) -> _ConnectionError:
    return _ConnectionError(E.ENHANCE_YOUR_CALM, reason, kind)


class _StreamError(Exception):
    def __init__(self, stream_id: int, code: int, reason: str) -> None:
        self.stream_id = stream_id
        self.code = code
        self.reason = reason


class Connection:
    """``client=True`` for upstream connections (we open streams), else server.

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
        self.closed = False  # a connection error was found or GOAWAY completed
        self.close_reason = ""
        self.close_kind = ""  # protocol error kind (floods.py) when we failed it
        # Our settings: what the peer may send us.
        self.local_max_concurrent = max_concurrent_streams
        self.local_stream_window = stream_window
        self.local_connection_window = connection_window
        self.local_max_frame_size = max_frame_size
        self.recv_window = connection_window
        self.owed = 0
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
        self._decoder = HeaderDecoder(max_header_list_size)
        self._max_block = max_header_list_size  # cap on a block's compressed bytes
        self._buf = b""
        self._preface_pending = not client
        self._initiated = False
        self.settings_received = False
        self._hb_stream = 0
        self._hb_flags = 0
        self._hb_parts: list[bytes] = []
        self._hb_size = 0
        self._table_size_sent = False
        # Recently closed streams, to tell "closed" from "never opened", and
        # those we reset, whose late frames are ignored (RFC 9113 section 5.1).
        self._closed_ids: set[int] = set()
        self._reset_ids: set[int] = set()
        self._closed_order: deque[int] = deque()
        # Flood limits (floods.py): one counter per kind of frame that costs
        # us work but carries nothing for the relay.
        self.limits = limits
        self._pings = RateLimit(limits.max_control_frames, clock)
        self._settings = RateLimit(limits.max_control_frames, clock)
        self._priorities = RateLimit(limits.max_control_frames, clock)
        self._late_resets = RateLimit(limits.max_control_frames, clock)
        self._empty = RateLimit(limits.max_control_frames, clock)
        self._window_updates = 0  # received, over the connection's life
        self._data_frames_sent = 0
        self._headers_sent = 0
        # DATA + HEADERS frames sent when the last PING arrived: a PING that
        # follows our DATA or HEADERS answers traffic (grpc-go's BDP probe)
        # and restarts the PING count, as grpc-core's pings-without-data rule.
        self._ping_mark = 0
        self._early_resets = ResetWatch(limits.max_reset_streams, clock)
        self._ctrl_queued = 0  # control frames we queued since the last take_output
        self._hb_frames = 0  # CONTINUATION frames of the header block being read
        # New streams per receive batch: above this sid, a batch opened over
        # 2x max_concurrent_streams streams (nginx's rapid reset rule).
        self._batch_cap = 4 * max(max_concurrent_streams, 1)
        self._batch_first = 0

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
            f.SETTINGS_MAX_HEADER_LIST_SIZE: self._max_block,
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
        self._ctrl_queued = 0
        return data

    def _control(self, data: bytes) -> None:
        """Queue a frame that answers the peer (ACK, RST_STREAM): a peer that
        makes us queue many without reading them is flooding us."""
        self._ctrl_queued += 1
        if self._ctrl_queued > self.limits.max_queued_control_frames:
            raise _calm("too many queued control frames (peer not reading)")
        self.out.append(data)
        self.out_size += len(data)

    def _emit(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)

    def _block(self, headers: HeaderList) -> bytes:
        block = encode_headers(headers)
        if not self._table_size_sent:
            self._table_size_sent = True
            block = TABLE_SIZE_ZERO + block
        return block

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
        s = Stream(sid, self.peer_initial_window, self.local_stream_window)
        self.streams[sid] = s
        self._headers_sent += 1
        self._emit(f.headers(sid, self._block(headers), end_stream, self.peer_max_frame_size))
        if end_stream:
            s.local_closed = True
        return s

    def send_headers(self, s: Stream, headers: HeaderList, end_stream: bool) -> None:
        if s.local_closed or s.closed:
            return
        s.responded = True
        self._headers_sent += 1
        self._emit(f.headers(s.id, self._block(headers), end_stream, self.peer_max_frame_size))
        if end_stream:
            s.local_closed = True
            if s.remote_closed:
                self._forget(s)

    def send_data(self, s: Stream, data: bytes | memoryview, end_stream: bool) -> None:
        """Queue DATA within the send windows (the caller's duty to check)."""
        if s.local_closed or s.closed:
            return
        n = len(data)
        mfs = self.peer_max_frame_size
        out = self.out
        flags = f.END_STREAM if end_stream else 0
        if n <= mfs:
            out.append(f.frame_header(n, f.DATA, flags, s.id))
            if n:
                out.append(data)
            self.out_size += n + 9
            self._data_frames_sent += 1
        else:
            pos = 0
            while pos < n:
                chunk = data[pos : pos + mfs]
                pos += len(chunk)
                out.append(f.frame_header(len(chunk), f.DATA, flags if pos >= n else 0, s.id))
                out.append(chunk)
                self.out_size += len(chunk) + 9
                self._data_frames_sent += 1
        s.send_window -= n
        self.send_window -= n
        if end_stream:
            s.local_closed = True
            if s.remote_closed:
                self._forget(s)

    def reset_stream(self, s: Stream, code: int) -> None:
        if s.closed:
            return
        self._emit(f.rst_stream(s.id, code))
        self._forget(s)
        self._remember_reset(s.id)

    def ack_data(self, s: Stream, n: int) -> None:
        """``n`` flow-controlled bytes of ``s`` were forwarded: return the credit.
        WINDOW_UPDATEs are sent once a quarter of a window is owed."""
        if n <= 0:
            return
        self.owed += n
        if self.owed >= self.local_connection_window >> 2 and not self.closed:
            self._emit(f.window_update(0, self.owed))
            self.recv_window += self.owed
            self.owed = 0
        if s.remote_closed or s.closed:
            return  # the peer sends no more on this stream: no stream credit needed
        s.owed += n
        if s.owed >= self.local_stream_window >> 2:
            self._emit(f.window_update(s.id, s.owed))
            s.recv_window += s.owed
            s.owed = 0

    def ping(self, opaque: bytes) -> None:
        self.initiate()
        self._emit(f.ping(opaque))

    def send_goaway(self, code: int = E.NO_ERROR, last_stream_id: int | None = None,
                    debug: bytes = b"") -> None:
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

    def _forget(self, s: Stream) -> None:
        s.closed = True
        self.streams.pop(s.id, None)
        self._remember_closed(s.id)

    def _remember_closed(self, sid: int) -> None:
        self._closed_ids.add(sid)
        self._closed_order.append(sid)
        if len(self._closed_order) > _RESET_MEMORY:
            old = self._closed_order.popleft()
            self._closed_ids.discard(old)
            self._reset_ids.discard(old)

    def _remember_reset(self, sid: int) -> None:
        if sid not in self._closed_ids:
            self._remember_closed(sid)
        self._reset_ids.add(sid)

    # ------------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self.closed:
            return events
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        self._batch_first = self.last_peer_stream
        if self._preface_pending:
            if len(data) < len(f.PREFACE):
                if f.PREFACE.startswith(data):
                    self._buf = data
                    return events
            elif data.startswith(f.PREFACE):
                pos = len(f.PREFACE)
                self._preface_pending = False
                self.initiate()
            if self._preface_pending:
                self.closed = True
                if _looks_like_http1(data):
                    self.close_reason = "HTTP/1.x request on an HTTP/2 port"
                    events.append(Http1Received())
                else:
                    self._fail(events, E.PROTOCOL_ERROR, "invalid connection preface")
                return events
        try:
            pos = self._frames(data, pos, events)
        except _ConnectionError as e:
            self._fail(events, e.code, e.reason, e.kind)
            return events
        if pos < len(data):
            self._buf = data[pos:]
            if len(self._buf) > self.local_max_frame_size + 9:
                self._fail(events, E.FRAME_SIZE_ERROR, _TOO_LARGE)
        return events

    def _fail(self, events: list[Event], code: int, reason: str, kind: str = BAD_FRAME) -> None:
        if not self.closed or not self.goaway_sent:
            self._emit(f.goaway(self.last_peer_stream, code, reason.encode()[:256]))
            self.goaway_sent = True
        self.closed = True
        self.close_reason = reason
        self.close_kind = kind
        events.append(ConnectionFailed(code, reason, kind))

    def _frames(self, data: bytes, pos: int, events: list[Event]) -> int:
        n = len(data)
        mv = memoryview(data)
        max_size = self.local_max_frame_size
        unpack = f.unpack_header
        while n - pos >= 9:
            lt, flags, sid = unpack(data, pos)
            length = lt >> 8
            ftype = lt & 0xFF
            sid &= 0x7FFFFFFF
            if length > max_size:
                raise _ConnectionError(E.FRAME_SIZE_ERROR, _TOO_LARGE)
            end = pos + 9 + length
            if end > n:
                break
            start = pos + 9
            pos = end
            if not self.settings_received and ftype != f.SETTINGS:
                raise _ConnectionError(E.PROTOCOL_ERROR, "first frame is not SETTINGS")
            if self._hb_stream and ftype != f.CONTINUATION:
                raise _ConnectionError(E.PROTOCOL_ERROR, "expected CONTINUATION")
            try:
                if ftype == f.DATA:
                    self._on_data(sid, flags, data, mv, start, length, events)
                elif ftype == f.HEADERS:
                    self._on_headers(sid, flags, data, start, length, events)
                elif ftype == f.WINDOW_UPDATE:
                    self._on_window_update(sid, data, start, length, events)
                elif ftype == f.RST_STREAM:
                    self._on_rst_stream(sid, data, start, length, events)
                elif ftype == f.SETTINGS:
                    self._on_settings(sid, flags, data, start, length, events)
                elif ftype == f.PING:
                    self._on_ping(sid, flags, data, start, length, events)
                elif ftype == f.CONTINUATION:
                    self._on_continuation(sid, flags, data, start, length, events)
                elif ftype == f.PRIORITY:
                    self._on_priority(sid, data, start, length)
                elif ftype == f.GOAWAY:
                    self._on_goaway(sid, data, start, length, events)
                elif ftype == f.PUSH_PROMISE:
                    raise _ConnectionError(E.PROTOCOL_ERROR, "PUSH_PROMISE is not accepted")
                elif self._empty.hit():
                    raise _calm("unknown/empty frame flood")
                # Unknown frame types are ignored (RFC 9113 section 4.1), counted.
            except _StreamError as e:
                self._stream_error(e, events)
            if self.closed:
                break
        return pos

    def _stream_error(self, e: _StreamError, events: list[Event]) -> None:
        self._control(f.rst_stream(e.stream_id, e.code))
        self._remember_reset(e.stream_id)
        s = self.streams.pop(e.stream_id, None)
        if s is not None:
            s.closed = True
            events.append(StreamReset(s, e.code, remote=False))
            if not self.client and not s.responded:
                self._early_reset()

    def _early_reset(self) -> None:
        """A client stream ended before its response (CVE-2023-44487)."""
        if self._early_resets.hit(self.last_peer_stream):
            raise _calm("rapid reset: streams reset before their response", RAPID_RESET)

    def _is_idle(self, sid: int) -> bool:
        if (sid & 1) == (0 if self.client else 1):  # peer-initiated parity
            return sid > self.last_peer_stream
        return sid >= self.next_stream_id

    def _on_data(self, sid: int, flags: int, data: bytes, mv: memoryview, start: int,
                 length: int, events: list[Event]) -> None:
        if sid == 0:
            raise _ConnectionError(E.PROTOCOL_ERROR, "DATA on stream 0")
        if flags & f.PADDED:
            if length < 1 or data[start] >= length:
                raise _ConnectionError(E.PROTOCOL_ERROR, "bad DATA padding")
            payload = mv[start + 1 : start + length - data[start]]
            if not payload and not flags & f.END_STREAM and self._empty.hit():
                raise _calm("empty DATA frame flood")
        else:
            payload = mv[start : start + length]
            if not length and not flags & f.END_STREAM and self._empty.hit():
                raise _calm("empty DATA frame flood")
        self.recv_window -= length
        if self.recv_window < 0:
            raise _ConnectionError(E.FLOW_CONTROL_ERROR, "connection window exceeded")
        s = self.streams.get(sid)
        if s is None or s.remote_closed or not s.headers_received:
            self._credit_connection(length)
            if s is None and self._is_idle(sid):
                raise _ConnectionError(E.PROTOCOL_ERROR, "DATA on an idle stream")
            if s is None and sid in self._reset_ids:
                return
            if s is not None and not s.headers_received:
                raise _StreamError(sid, E.PROTOCOL_ERROR, "DATA before HEADERS")
            raise _StreamError(sid, E.STREAM_CLOSED, "DATA on a closed stream")
        s.recv_window -= length
        if s.recv_window < 0:
            self._credit_connection(length)
            raise _StreamError(sid, E.FLOW_CONTROL_ERROR, "stream window exceeded")
        padding = length - len(payload)
        if padding:
            self.ack_data(s, padding)
        end_stream = bool(flags & f.END_STREAM)
        if s.expected_length is not None:
            s.received_length += len(payload)
            if s.received_length > s.expected_length or (
                end_stream and s.received_length != s.expected_length
            ):
                self._credit_connection(len(payload))
                raise _StreamError(sid, E.PROTOCOL_ERROR, "content-length mismatch")
        if end_stream:
            s.remote_closed = True
            if s.local_closed:
                self._forget(s)
        events.append(DataReceived(s, payload, len(payload), end_stream))

    def _credit_connection(self, n: int) -> None:
        self.owed += n
        if self.owed >= self.local_connection_window >> 2:
            self._emit(f.window_update(0, self.owed))
            self.recv_window += self.owed
            self.owed = 0

    def _on_headers(self, sid: int, flags: int, data: bytes, start: int, length: int,
                    events: list[Event]) -> None:
        if sid == 0:
            raise _ConnectionError(E.PROTOCOL_ERROR, "HEADERS on stream 0")
        pos, end = start, start + length
        if flags & f.PADDED:
            if length < 1:
                raise _ConnectionError(E.PROTOCOL_ERROR, "bad HEADERS padding")
            end -= data[pos]
            pos += 1
        if flags & f.PRIORITY_FLAG:
            pos += 5
        if end < pos:
            raise _ConnectionError(E.PROTOCOL_ERROR, "bad HEADERS padding")
        if end - pos > self._max_block:
            raise _calm("header block larger than http2_max_header_size", HEADER_SIZE)
        self._hb_parts = [data[pos:end]]
        self._hb_size = end - pos
        self._hb_frames = 0
        self._hb_flags = flags
        if flags & f.END_HEADERS:
            self._header_block(sid, events)
        else:
            self._hb_stream = sid
        if flags & f.PRIORITY_FLAG and (f.unpack_u32(data, start + (flags & f.PADDED and 1))[0]
                                        & 0x7FFFFFFF) == sid:
            raise _StreamError(sid, E.PROTOCOL_ERROR, "stream depends on itself")

    def _on_continuation(self, sid: int, flags: int, data: bytes, start: int, length: int,
                         events: list[Event]) -> None:
        if not self._hb_stream or sid != self._hb_stream:
            raise _ConnectionError(E.PROTOCOL_ERROR, "unexpected CONTINUATION")
        self._hb_size += length
        if self._hb_size > self._max_block:
            raise _calm("header block larger than http2_max_header_size", HEADER_SIZE)
        self._hb_frames += 1
        if self._hb_frames > self.limits.max_continuation_frames:
            raise _calm("too many CONTINUATION frames", HEADER_SIZE)
        self._hb_parts.append(data[start : start + length])
        if flags & f.END_HEADERS:
            self._hb_stream = 0
            self._header_block(sid, events)

    def _header_block(self, sid: int, events: list[Event]) -> None:
        parts = self._hb_parts
        block = parts[0] if len(parts) == 1 else b"".join(parts)
        self._hb_parts = []
        end_stream = bool(self._hb_flags & f.END_STREAM)
        try:
            headers = self._decoder.decode(block)
        except HeaderDecodeError as e:
            raise _ConnectionError(E.COMPRESSION_ERROR, f"HPACK: {e}") from None
        except HeaderListTooLarge:
            raise _calm("header list larger than http2_max_header_size", HEADER_SIZE) from None
        s = self.streams.get(sid)
        if s is None:
            if not self.client and sid & 1 and sid > self.last_peer_stream:
                self._new_request(sid, headers, end_stream, events)
            elif sid in self._reset_ids:
                return
            elif sid in self._closed_ids:
                raise _ConnectionError(E.STREAM_CLOSED, "HEADERS on a closed stream")
            else:
                raise _ConnectionError(E.PROTOCOL_ERROR, f"unexpected stream id {sid}")
            return
        if s.remote_closed:
            raise _StreamError(sid, E.STREAM_CLOSED, "HEADERS after END_STREAM")
        if self.client and not s.headers_received:
            err = headers.check(check_response)
            if err:
                raise _StreamError(sid, E.PROTOCOL_ERROR, err)
            if headers[0][1][:1] == b"1":
                if end_stream:
                    raise _StreamError(sid, E.PROTOCOL_ERROR, "END_STREAM on 1xx")
                return  # informational responses are not relayed
            s.headers_received = True
            s.expected_length = content_length(headers)
            trailers = False
        else:
            if not end_stream:
                raise _StreamError(sid, E.PROTOCOL_ERROR, "trailers without END_STREAM")
            err = headers.check(check_trailers)
            if err:
                raise _StreamError(sid, E.PROTOCOL_ERROR, err)
            if s.expected_length is not None and s.received_length != s.expected_length:
                raise _StreamError(sid, E.PROTOCOL_ERROR, "content-length mismatch")
            trailers = True
        if end_stream:
            s.remote_closed = True
            if s.local_closed:
                self._forget(s)
        events.append(HeadersReceived(s, headers, end_stream, trailers))

    def _new_request(self, sid: int, headers: HeaderBlock, end_stream: bool,
                     events: list[Event]) -> None:
        self.last_peer_stream = sid
        if sid - self._batch_first > self._batch_cap:
            raise _calm("rapid reset: too many new streams at once", RAPID_RESET)
        if self.goaway_sent:
            self._control(f.rst_stream(sid, E.REFUSED_STREAM))
            self._remember_reset(sid)
            return
        if len(self.streams) >= self.local_max_concurrent:
            self._control(f.rst_stream(sid, E.REFUSED_STREAM))
            self._remember_reset(sid)
            self._early_reset()
            return
        err = headers.check(check_request)
        cl = content_length(headers) if err is None else None
        if err is None and cl is not None and (cl < 0 or (end_stream and cl != 0)):
            err = "bad content-length"
        if err:
            self._control(f.rst_stream(sid, E.PROTOCOL_ERROR))
            self._remember_reset(sid)
            self._early_reset()
            return
        policy = self.ping_policy
        if policy is not None:
            policy.strikes = 0  # a new call: PINGs so far were no abuse
        s = Stream(sid, self.peer_initial_window, self.local_stream_window)
        s.headers_received = True
        s.expected_length = cl
        s.remote_closed = end_stream
        self.streams[sid] = s
        events.append(HeadersReceived(s, headers, end_stream, False))

    def _on_window_update(self, sid: int, data: bytes, start: int, length: int,
                          events: list[Event]) -> None:
        if length != 4:
            raise _ConnectionError(E.FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        self._window_updates += 1
        if self._window_updates > 5 + 2 * (
                ((self.last_peer_stream + 1) >> 1) + (self.next_stream_id >> 1)
                + self.limits.max_window_updates_per_data_frame * self._data_frames_sent):
            raise _calm("WINDOW_UPDATE flood")
        incr = f.unpack_u32(data, start)[0] & 0x7FFFFFFF
        if sid == 0:
            if incr == 0:
                raise _ConnectionError(E.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += incr
            if self.send_window > f.MAX_WINDOW:
                raise _ConnectionError(E.FLOW_CONTROL_ERROR, "connection window overflow")
            events.append(WindowOpened(None))
            return
        s = self.streams.get(sid)
        if s is None:
            if self._is_idle(sid):
                raise _ConnectionError(E.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return
        if incr == 0:
            raise _StreamError(sid, E.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        s.send_window += incr
        if s.send_window > f.MAX_WINDOW:
            raise _StreamError(sid, E.FLOW_CONTROL_ERROR, "stream window overflow")
        events.append(WindowOpened(s))

    def _on_rst_stream(self, sid: int, data: bytes, start: int, length: int,
                       events: list[Event]) -> None:
        if sid == 0:
            raise _ConnectionError(E.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if length != 4:
            raise _ConnectionError(E.FRAME_SIZE_ERROR, "RST_STREAM length")
        s = self.streams.pop(sid, None)
        if s is None:
            if self._is_idle(sid):
                raise _ConnectionError(E.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            if self._late_resets.hit():
                raise _calm("RST_STREAM flood")
            return
        s.closed = True
        # Closed, not "reset by us": the peer knows, so its later frames
        # there are STREAM_CLOSED errors (RFC 9113 section 5.1), not ignored.
        self._remember_closed(sid)
        events.append(StreamReset(s, f.unpack_u32(data, start)[0], remote=True))
        if not self.client and not s.responded:
            self._early_reset()

    def _on_settings(self, sid: int, flags: int, data: bytes, start: int, length: int,
                     events: list[Event]) -> None:
        if sid != 0:
            raise _ConnectionError(E.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if length:
                raise _ConnectionError(E.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        if length % 6:
            raise _ConnectionError(E.FRAME_SIZE_ERROR, "SETTINGS length")
        if self._settings.hit():
            raise _calm("SETTINGS flood")
        self.settings_received = True
        grew = False
        for pos in range(start, start + length, 6):
            key = (data[pos] << 8) | data[pos + 1]
            value = f.unpack_u32(data, pos + 2)[0]
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise _ConnectionError(E.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for s in self.streams.values():
                    s.send_window += delta
                    if s.send_window > f.MAX_WINDOW:
                        raise _ConnectionError(E.FLOW_CONTROL_ERROR, "stream window overflow")
                grew = grew or delta > 0
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME_SIZE <= value <= 2**24 - 1:
                    raise _ConnectionError(E.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE")
                self.peer_max_frame_size = value
            elif key == f.SETTINGS_MAX_CONCURRENT_STREAMS:
                self.peer_max_concurrent = value
            elif key == f.SETTINGS_ENABLE_PUSH:
                if value > 1 or (self.client and value):
                    raise _ConnectionError(E.PROTOCOL_ERROR, "bad ENABLE_PUSH")
            elif key == f.SETTINGS_ENABLE_CONNECT_PROTOCOL and value > 1:
                raise _ConnectionError(E.PROTOCOL_ERROR, "bad ENABLE_CONNECT_PROTOCOL")
        self._control(f.SETTINGS_ACK)
        # Always an event: a peer's first SETTINGS may come alone (grpc-js,
        # grpc-go), and it is what lets waiting calls open their streams.
        events.append(SettingsReceived())
        if grew:
            events.append(WindowOpened(None))

    def _on_ping(self, sid: int, flags: int, data: bytes, start: int, length: int,
                 events: list[Event]) -> None:
        if sid != 0:
            raise _ConnectionError(E.PROTOCOL_ERROR, "PING on a stream")
        if length != 8:
            raise _ConnectionError(E.FRAME_SIZE_ERROR, "PING length")
        sent = self._data_frames_sent + self._headers_sent
        if sent != self._ping_mark:
            self._ping_mark = sent
            self._pings.count = 0
        if self._pings.hit():
            raise _calm("PING flood")
        opaque = data[start : start + 8]
        if flags & f.ACK:
            self.last_ping_ack = opaque
            self.ping_acks += 1
            events.append(PingAcked(opaque))
            return
        if self.ping_policy is not None and self.ping_policy.on_ping(bool(self.streams)):
            raise _calm("too_many_pings")
        self._control(f.ping(opaque, ack=True))

    def _on_priority(self, sid: int, data: bytes, start: int, length: int) -> None:
        if sid == 0:
            raise _ConnectionError(E.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if length != 5:
            raise _StreamError(sid, E.FRAME_SIZE_ERROR, "PRIORITY length")
        if self._priorities.hit():
            raise _calm("PRIORITY flood")
        if (f.unpack_u32(data, start)[0] & 0x7FFFFFFF) == sid:
            raise _StreamError(sid, E.PROTOCOL_ERROR, "stream depends on itself")

    def _on_goaway(self, sid: int, data: bytes, start: int, length: int,
                   events: list[Event]) -> None:
        if sid != 0:
            raise _ConnectionError(E.PROTOCOL_ERROR, "GOAWAY on a stream")
        if length < 8:
            raise _ConnectionError(E.FRAME_SIZE_ERROR, "GOAWAY length")
        last = f.unpack_u32(data, start)[0] & 0x7FFFFFFF
        code = f.unpack_u32(data, start + 4)[0]
        self.goaway_received = last if self.goaway_received is None else min(
            last, self.goaway_received)
        events.append(GoAwayReceived(last, code, bytes(data[start + 8 : start + length])))
        if self.client:
            # Streams above last_stream_id were never processed: safe to retry.
            for s in [s for s in self.streams.values() if s.id > last]:
                self._forget(s)
                events.append(StreamReset(s, E.REFUSED_STREAM, remote=True))


def _looks_like_http1(data: bytes) -> bool:
    head = data[:8]
    return any(
        head.startswith(m)
        for m in (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS", b"PATCH ",
                  b"CONNECT ", b"TRACE ")
    ) and b"HTTP/2.0" not in data[:64]
