"""Events the connection core hands to its driver. Plain slotted classes: one
is made per frame on the hot path, so they stay as cheap as a tuple."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.http2.hpack_codec import HeaderList

if TYPE_CHECKING:  # connection.py makes these events: no import at run time
    from proxy.http2.connection import Stream


class Event:
    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"


class HeadersReceived(Event):
    """A request (server role), a response (client role), or trailers."""

    __slots__ = ("stream", "headers", "end_stream", "trailers")

    def __init__(self, stream: Stream, headers: HeaderList, end_stream: bool, trailers: bool):
        self.stream = stream
        self.headers = headers
        self.end_stream = end_stream
        self.trailers = trailers


class DataReceived(Event):
    """``data`` may be a memoryview into the read buffer; ``flow_len`` counts
    padding too and is what must be acknowledged once ``data`` is forwarded."""

    __slots__ = ("stream", "data", "flow_len", "end_stream")

    def __init__(self, stream: Stream, data: memoryview | bytes, flow_len: int, end_stream: bool):
        self.stream = stream
        self.data = data
        self.flow_len = flow_len
        self.end_stream = end_stream


class StreamReset(Event):
    """The stream ended abnormally: reset by the peer (``remote``), by this
    side for a stream error, or refused by a GOAWAY (REFUSED_STREAM)."""

    __slots__ = ("stream", "code", "remote")

    def __init__(self, stream: Stream, code: int, remote: bool):
        self.stream = stream
        self.code = code
        self.remote = remote


class WindowOpened(Event):
    """Send credit grew: on one stream, or (stream None) on the connection."""

    __slots__ = ("stream",)

    def __init__(self, stream: Stream | None):
        self.stream = stream


class SettingsReceived(Event):
    """The peer's SETTINGS were applied: its stream limit, windows and frame
    size may have changed. The first one lets a client open streams."""

    __slots__ = ()


class GoAwayReceived(Event):
    __slots__ = ("last_stream_id", "code", "debug")

    def __init__(self, last_stream_id: int, code: int, debug: bytes):
        self.last_stream_id = last_stream_id
        self.code = code
        self.debug = debug


class PingAcked(Event):
    __slots__ = ("opaque",)

    def __init__(self, opaque: bytes):
        self.opaque = opaque


class ConnectionFailed(Event):
    """This side found a connection error; a GOAWAY is queued: flush and close."""

    __slots__ = ("code", "reason", "kind")

    def __init__(self, code: int, reason: str, kind: str = "bad_frame"):
        self.code = code
        self.reason = reason
        self.kind = kind  # protocol error kind (http2/floods.py): bad_frame, flood, ...


class Http1Received(Event):
    """The client spoke HTTP/1.x on an h2c port instead of the HTTP/2 preface."""

    __slots__ = ()
