"""HTTP/2 frame constants and byte builders.

The relay parses and writes the 9-byte frame header itself: building a
hyperframe object per DATA frame costs more than the relaying it describes.
"""

from __future__ import annotations

import struct
from enum import IntEnum

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 section 6).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings identifiers.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8

DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME_SIZE = 16_384
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1


class ErrorCode(IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


_HEADER = struct.Struct(">IBI")  # (length << 8 | type), flags, stream id
_U32 = struct.Struct(">I")
_RST = struct.Struct(">IBII")
_WU = struct.Struct(">IBII")
_GOAWAY = struct.Struct(">IBIII")
_SETTING = struct.Struct(">HI")

unpack_header = _HEADER.unpack_from
# pack_header((length << 8) | type, flags, stream id): frame_header without a
# call of its own, for the per-frame paths.
pack_header = _HEADER.pack
unpack_u32 = _U32.unpack_from


def frame_header(length: int, ftype: int, flags: int, stream_id: int) -> bytes:
    return _HEADER.pack((length << 8) | ftype, flags, stream_id)


def rst_stream(stream_id: int, code: int) -> bytes:
    return _RST.pack((4 << 8) | RST_STREAM, 0, stream_id, code)


def window_update(stream_id: int, increment: int) -> bytes:
    return _WU.pack((4 << 8) | WINDOW_UPDATE, 0, stream_id, increment)


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return _GOAWAY.pack(((8 + len(debug)) << 8) | GOAWAY, 0, 0, last_stream_id, code) + debug


def settings(values: dict[int, int]) -> bytes:
    body = b"".join([_SETTING.pack(k, v) for k, v in values.items()])
    return frame_header(len(body), SETTINGS, 0, 0) + body


SETTINGS_ACK = frame_header(0, SETTINGS, ACK, 0)


def ping(opaque: bytes, ack: bool = False) -> bytes:
    return frame_header(8, PING, ACK if ack else 0, 0) + opaque


def headers(stream_id: int, block: bytes, end_stream: bool, max_frame_size: int) -> bytes:
    """A HEADERS frame, split into CONTINUATION frames when the block is large."""
    flags = END_STREAM if end_stream else 0
    n = len(block)
    if n <= max_frame_size:
        return pack_header((n << 8) | HEADERS, flags | END_HEADERS, stream_id) + block
    parts = [frame_header(max_frame_size, HEADERS, flags, stream_id), block[:max_frame_size]]
    pos = max_frame_size
    while pos < n:
        chunk = block[pos : pos + max_frame_size]
        pos += len(chunk)
        parts.append(
            frame_header(len(chunk), CONTINUATION, END_HEADERS if pos >= n else 0, stream_id)
        )
        parts.append(chunk)
    return b"".join(parts)
