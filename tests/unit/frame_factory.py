"""Builds real HTTP/2 frames as bytes, in the manner of h2's test FrameFactory."""

from __future__ import annotations

import hpack
from hyperframe import frame as hf

from proxy.http2.frames import PREFACE

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/echo.Echo/Unary"),
    (b":authority", b"localhost"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]


class FrameFactory:
    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def preamble(self) -> bytes:
        return PREFACE + self.settings()

    def settings(self, values: dict[int, int] | None = None, ack: bool = False) -> bytes:
        f = hf.SettingsFrame(0, settings=values or {})
        if ack:
            f.flags.add("ACK")
        return f.serialize()

    def headers(
        self,
        stream_id: int,
        headers: list[tuple[bytes, bytes]] | None = None,
        end_stream: bool = False,
        end_headers: bool = True,
        raw_block: bytes | None = None,
        padded: int = 0,
        priority_depends_on: int | None = None,
    ) -> bytes:
        f = hf.HeadersFrame(stream_id)
        f.data = raw_block if raw_block is not None else self.encoder.encode(headers or REQUEST)
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        if padded:
            f.flags.add("PADDED")
            f.pad_length = padded
        if priority_depends_on is not None:
            f.flags.add("PRIORITY")
            f.depends_on = priority_depends_on
        return f.serialize()

    def continuation(self, stream_id: int, block: bytes, end_headers: bool = True) -> bytes:
        f = hf.ContinuationFrame(stream_id, data=block)
        if end_headers:
            f.flags.add("END_HEADERS")
        return f.serialize()

    def data(self, stream_id: int, data: bytes, end_stream: bool = False, padded: int = 0) -> bytes:
        f = hf.DataFrame(stream_id, data=data)
        if end_stream:
            f.flags.add("END_STREAM")
        if padded:
            f.flags.add("PADDED")
            f.pad_length = padded
        return f.serialize()

    def window_update(self, stream_id: int, increment: int) -> bytes:
        return hf.WindowUpdateFrame(stream_id, window_increment=increment).serialize()

    def rst_stream(self, stream_id: int, code: int) -> bytes:
        return hf.RstStreamFrame(stream_id, error_code=code).serialize()

    def ping(self, opaque: bytes = b"12345678", ack: bool = False) -> bytes:
        f = hf.PingFrame(0, opaque_data=opaque)
        if ack:
            f.flags.add("ACK")
        return f.serialize()

    def priority(self, stream_id: int, depends_on: int) -> bytes:
        return hf.PriorityFrame(stream_id, depends_on=depends_on).serialize()

    def goaway(self, last_stream_id: int, code: int = 0) -> bytes:
        return hf.GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code).serialize()


def parse_frames(data: bytes) -> list[hf.Frame]:
    """Every frame in ``data``, as hyperframe objects (test side only)."""
    frames = []
    pos = 0
    while pos < len(data):
        f, length = hf.Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
        f.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
        frames.append(f)
        pos += 9 + length
    return frames
