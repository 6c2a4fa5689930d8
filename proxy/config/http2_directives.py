"""The HTTP/2 limits of a ``server`` block: checked and built into an
``Http2Limits``. Kept apart from builder.py, which only hands the directives over.

    http2_max_header_size 16k;          http2_max_continuation_frames 8;
    http2_max_reset_streams 250;        http2_max_control_frames 100;
    http2_max_window_updates_per_data_frame 10;
    http2_max_queued_control_frames 1000;
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from proxy.config.errors import ConfigError, quote
from proxy.config.model import Http2Limits
from proxy.config.parser import Directive
from proxy.config.units import UnitError, parse_size

# directive -> (Http2Limits field, minimum, maximum); sizes take k/m suffixes.
_COUNTS = {
    "http2_max_continuation_frames": ("max_continuation_frames", 1, 1 << 20),
    "http2_max_reset_streams": ("max_reset_streams", 1, 1 << 30),
    "http2_max_control_frames": ("max_control_frames", 1, 1 << 30),
    "http2_max_window_updates_per_data_frame": ("max_window_updates_per_data_frame", 1, 1 << 20),
    "http2_max_queued_control_frames": ("max_queued_control_frames", 1, 1 << 30),
}
# A header list below 1k cannot hold a gRPC request; over 16m hpack's own
# limits and SETTINGS_MAX_HEADER_LIST_SIZE's sensible range end.
_HEADER_SIZE = ("max_header_size", 1 << 10, 16 << 20)
DIRECTIVES = ("http2_max_header_size", *_COUNTS)


def _error(d: Directive, message: str) -> ConfigError:
    return ConfigError(d.file, d.line, message)


def _value(d: Directive) -> tuple[str, int]:
    text = d.args[0]
    if d.name == "http2_max_header_size":
        field, low, high = _HEADER_SIZE
        try:
            value = parse_size(text)
        except UnitError as e:
            raise _error(d, str(e)) from None
    else:
        field, low, high = _COUNTS[d.name]
        value = int(text) if re.fullmatch(r"[0-9]{1,10}", text) else -1
    if not low <= value <= high:
        raise _error(d, f"invalid value {quote(text)} in {quote(d.name)}, "
                        f"it must be from {low} to {high}")
    return field, value


def build_limits(directives: Sequence[Directive]) -> Http2Limits:
    """``directives``: the server block's http2_* limit directives, each once."""
    return Http2Limits(**dict(_value(d) for d in directives))  # type: ignore[arg-type]
