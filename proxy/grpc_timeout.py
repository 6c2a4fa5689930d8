"""The ``grpc-timeout`` header: at most 8 digits and a unit (gRPC over HTTP/2)."""

from __future__ import annotations

_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}


def parse_grpc_timeout(value: bytes) -> float | None:
    """Seconds, or None when the value is malformed (then it is ignored, as
    gRPC servers do)."""
    if not 2 <= len(value) <= 9:
        return None
    unit = _UNITS.get(value[-1])
    digits = value[:-1]
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit
