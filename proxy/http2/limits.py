"""What a peer may send on one connection before it gets GOAWAY
ENHANCE_YOUR_CALM: the flood and size limits the core enforces
(docs/configuration.md, "Limits and hardening"). The configuration model
re-exports them; the ``http2_*`` directives of a ``server`` block build them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Defaults of the http2_* directives, documented in docs/configuration.md.
DEFAULT_HTTP2_MAX_HEADER_SIZE = 16 << 10  # nginx's http2_max_header_size
DEFAULT_HTTP2_MAX_CONTINUATION_FRAMES = 8  # nghttp2's cap (CVE-2024-28182)
DEFAULT_HTTP2_MAX_RESET_STREAMS = 250  # early resets a second: half of 500 streams
DEFAULT_HTTP2_MAX_CONTROL_FRAMES = 100  # a second, per kind (PING, SETTINGS, ...)
# Envoy's max_inbound_window_update_frames_per_data_frame_sent
DEFAULT_HTTP2_MAX_WINDOW_UPDATES_PER_DATA_FRAME = 10
DEFAULT_HTTP2_MAX_QUEUED_CONTROL_FRAMES = 1000  # Envoy's max_outbound_control_frames


@dataclass(frozen=True, slots=True)
class Http2Limits:
    """What one client connection may send before it gets GOAWAY
    ENHANCE_YOUR_CALM (docs/configuration.md, "Limits and hardening")."""

    # Header block, compressed and decoded (SETTINGS_MAX_HEADER_LIST_SIZE).
    max_header_size: int = DEFAULT_HTTP2_MAX_HEADER_SIZE
    max_continuation_frames: int = DEFAULT_HTTP2_MAX_CONTINUATION_FRAMES  # per header block
    # Rapid reset: streams a second reset by the client (or refused) before
    # their response, when they are also over half of the streams opened.
    max_reset_streams: int = DEFAULT_HTTP2_MAX_RESET_STREAMS
    # PING, SETTINGS, PRIORITY, RST_STREAM on closed streams, empty DATA and
    # unknown frames: each kind a second.
    max_control_frames: int = DEFAULT_HTTP2_MAX_CONTROL_FRAMES
    # WINDOW_UPDATEs are answers to our DATA: at most this many per DATA frame
    # sent (plus 5 + 2 per stream), over the connection's life, as Envoy. A
    # rate would cut off a legitimate fast reader (ping-pong streams send
    # one per message).
    max_window_updates_per_data_frame: int = DEFAULT_HTTP2_MAX_WINDOW_UPDATES_PER_DATA_FRAME
    # PING/SETTINGS ACKs and RST_STREAMs queued for a client that does not read.
    max_queued_control_frames: int = DEFAULT_HTTP2_MAX_QUEUED_CONTROL_FRAMES


# Upstream connections (our backends) are trusted: no flood limits, and room
# for large trailers (grpc-status-details-bin).
UPSTREAM_MAX_HEADER_LIST_SIZE = 64 << 10
_NO_LIMIT = 2**62
TRUSTED_LIMITS = Http2Limits(
    max_header_size=UPSTREAM_MAX_HEADER_LIST_SIZE,
    max_continuation_frames=_NO_LIMIT,
    max_reset_streams=_NO_LIMIT,
    max_control_frames=_NO_LIMIT,
    max_window_updates_per_data_frame=_NO_LIMIT,
    max_queued_control_frames=_NO_LIMIT,
)
CLIENT_LIMITS = Http2Limits()
