"""Assembly of one header block from a HEADERS frame and its CONTINUATION
frames (RFC 9113 sections 4.3, 6.2 and 6.10), within the size caps: a block
past ``max_size`` compressed bytes, or with more than ``max_continuations``
CONTINUATION frames, is refused as soon as the frame that crosses the cap
arrives, never buffered whole. Decoding is the connection's (hpack_codec.py).
"""

from __future__ import annotations

from proxy.http2 import frames as f
from proxy.http2.errors import HEADER_SIZE, H2ConnectionError, calm

E = f.ErrorCode
_TOO_LARGE = "header block larger than http2_max_header_size"


class HeaderBlockReader:
    """``headers`` and ``continuation`` return the complete block (bytes) once
    END_HEADERS arrives, else None. ``stream_id`` is the stream whose block is
    incomplete (0: none), ``flags`` the HEADERS frame's flags of the last
    block (its END_STREAM)."""

    __slots__ = (
        "max_size",
        "max_continuations",
        "stream_id",
        "flags",
        "parts",
        "size",
        "continuations",
    )

    def __init__(self, max_size: int, max_continuations: int) -> None:
        self.max_size = max_size  # compressed bytes, as SETTINGS_MAX_HEADER_LIST_SIZE
        self.max_continuations = max_continuations
        self.stream_id = 0
        self.flags = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.continuations = 0

    def headers(self, sid: int, flags: int, data: bytes, start: int, length: int) -> bytes | None:
        """A HEADERS frame's payload: its fragment, without padding and priority."""
        pos, end = start, start + length
        if flags & f.PADDED:
            if length < 1:
                raise H2ConnectionError(E.PROTOCOL_ERROR, "bad HEADERS padding")
            end -= data[pos]
            pos += 1
        if flags & f.PRIORITY_FLAG:
            pos += 5
        if end < pos:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "bad HEADERS padding")
        if end - pos > self.max_size:
            raise calm(_TOO_LARGE, HEADER_SIZE)
        self.size = end - pos
        self.continuations = 0
        self.flags = flags
        if flags & f.END_HEADERS:
            return data[pos:end]
        self.parts = [data[pos:end]]
        self.stream_id = sid
        return None

    def continuation(
        self, sid: int, flags: int, data: bytes, start: int, length: int
    ) -> bytes | None:
        if sid != self.stream_id:
            raise H2ConnectionError(E.PROTOCOL_ERROR, "unexpected CONTINUATION")
        self.size += length
        if self.size > self.max_size:
            raise calm(_TOO_LARGE, HEADER_SIZE)
        self.continuations += 1
        if self.continuations > self.max_continuations:
            raise calm("too many CONTINUATION frames", HEADER_SIZE)
        self.parts.append(data[start : start + length])
        if not flags & f.END_HEADERS:
            return None
        self.stream_id = 0
        parts = self.parts
        self.parts = []
        return parts[0] if len(parts) == 1 else b"".join(parts)
