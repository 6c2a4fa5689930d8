"""Parsers of the HTTP/2 limits of a ``server`` block, each into its field of
``Http2Limits`` (the rows are in builder.py's table).

    http2_max_header_size 16k;          http2_max_continuation_frames 8;
    http2_max_reset_streams 250;        http2_max_control_frames 100;
    http2_max_window_updates_per_data_frame 10;
    http2_max_queued_control_frames 1000;
"""

from __future__ import annotations

import re
from collections.abc import Callable

from proxy.config.commands import error
from proxy.config.errors import quote
from proxy.config.parser import Directive
from proxy.config.units import UnitError, parse_size

# A header list below 1k cannot hold a gRPC request; over 16m hpack's own
# limits and SETTINGS_MAX_HEADER_LIST_SIZE's sensible range end.
MIN_HEADER_SIZE = 1 << 10
MAX_HEADER_SIZE = 16 << 20


def header_size(d: Directive, _: object) -> int:
    """A size (k/m suffixes) from MIN_HEADER_SIZE to MAX_HEADER_SIZE."""
    try:
        value = parse_size(d.args[0])
    except UnitError as e:
        raise error(d, str(e)) from None
    return _within(d, value, MIN_HEADER_SIZE, MAX_HEADER_SIZE)


def count(low: int, high: int) -> Callable[[Directive, object], int]:
    """The parser of a count from ``low`` to ``high``."""

    def parse(d: Directive, _: object) -> int:
        text = d.args[0]
        return _within(d, int(text) if re.fullmatch(r"[0-9]{1,10}", text) else -1, low, high)

    return parse


def _within(d: Directive, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise error(
            d,
            f"invalid value {quote(d.args[0])} in {quote(d.name)}, it must be from {low} to {high}",
        )
    return value
