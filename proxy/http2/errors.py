"""The protocol errors the core finds in what a peer sends (RFC 9113 section
5.4): a connection error ends the connection with GOAWAY, a stream error one
stream with RST_STREAM. Internal to the core: the driver sees them as
``ConnectionFailed`` and ``StreamReset`` events.

``kind`` values are the ``grpc_proxy_http2_protocol_errors_total`` labels.
"""

from __future__ import annotations

from proxy.http2.frames import ErrorCode

FLOOD = "flood"  # a frame-rate limit or the outbound control frame bound
RAPID_RESET = "rapid_reset"  # CVE-2023-44487
HEADER_SIZE = "header_size"  # oversized header block, CONTINUATION flood
BAD_FRAME = "bad_frame"  # any other connection error found in what a peer sent


class H2ConnectionError(Exception):
    def __init__(self, code: int, reason: str, kind: str = BAD_FRAME) -> None:
        self.code = code
        self.reason = reason
        self.kind = kind


class H2StreamError(Exception):
    def __init__(self, stream_id: int, code: int, reason: str) -> None:
        self.stream_id = stream_id
        self.code = code
        self.reason = reason


def calm(reason: str, kind: str = FLOOD) -> H2ConnectionError:
    """GOAWAY ENHANCE_YOUR_CALM: the peer sends more than its limits allow."""
    return H2ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, reason, kind)
