"""Values inside directives: durations, sizes and addresses, nginx-style.

These functions know nothing about files or lines: they raise ``UnitError``
with a user-facing message and the builder adds ``FILE:LINE``.
"""

from __future__ import annotations

import ipaddress
import re

from proxy.config.errors import quote
from proxy.config.model import Address

# Largest accepted duration: about 68 years, far beyond any useful timeout,
# and small enough that float seconds stay exact to the millisecond.
MAX_DURATION_MS = (2**31 - 1) * 1000
MAX_SIZE = 2**63 - 1

# nginx units, largest first; a compound value must use them in this order.
_DURATION_UNITS_MS: dict[str, int] = {
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}
# [0-9], not \d: \d also matches other scripts' digits, which int() accepts.
_NUMBER = re.compile(r"[0-9]+")
_DURATION_PART = re.compile(r"([0-9]{1,18})(ms|d|h|m|s)")
_SIZE = re.compile(r"([0-9]{1,19})([kKmMgG]?)")
_SIZE_FACTORS: dict[str, int] = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

_PORT = re.compile(r"[0-9]{1,5}")
_IPV4ISH = re.compile(r"[0-9.]+")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
ANY_HOST = "0.0.0.0"


class UnitError(ValueError):
    """A malformed value; ``str()`` is the message shown after ``FILE:LINE:``."""


def parse_duration(text: str) -> float:
    """``"1m30s"`` -> 90.0 seconds. A bare number means seconds, as in nginx.

    Units: ``ms s m h d``, largest first, each at most once, integers only.
    """
    return _duration_ms(text) / 1000


def parse_timeout(text: str) -> float | None:
    """A duration, or ``None`` ("no timeout") for ``off`` and for zero."""
    if text == "off":
        return None
    seconds = parse_duration(text)
    return seconds or None


def _duration_ms(text: str) -> int:
    if _NUMBER.fullmatch(text):
        return _check_duration(text, int(text) * 1000 if len(text) <= 18 else -1)
    total, pos, last_rank = 0, 0, -1
    ranks = list(_DURATION_UNITS_MS)
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise UnitError(f"invalid duration {quote(text)}")
        rank = ranks.index(m.group(2))
        if rank <= last_rank:  # "1s1m" or "1s1s": nginx rejects these too
            raise UnitError(f"invalid duration {quote(text)}")
        total += int(m.group(1)) * _DURATION_UNITS_MS[m.group(2)]
        pos, last_rank = m.end(), rank
    if last_rank < 0:
        raise UnitError(f"invalid duration {quote(text)}")
    return _check_duration(text, total)


def _check_duration(text: str, ms: int) -> int:
    if ms < 0 or ms > MAX_DURATION_MS:
        raise UnitError(f"invalid duration {quote(text)}, it is too large")
    return ms


def format_duration(seconds: float) -> str:
    """The shortest compound form, ``90.0`` -> ``"1m30s"``; inverse of parse."""
    ms = round(seconds * 1000)
    if ms < 0:
        raise ValueError("negative duration")
    if ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, factor in _DURATION_UNITS_MS.items():
        count, ms = divmod(ms, factor)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_size(text: str) -> int:
    """``"64k"`` -> 65536 bytes. Suffixes ``k m g`` (any case); bare = bytes."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise UnitError(f"invalid size {quote(text)}")
    size = int(m.group(1)) * _SIZE_FACTORS[m.group(2).lower()]
    if size > MAX_SIZE:
        raise UnitError(f"invalid size {quote(text)}, it is too large")
    return size


def format_size(size: int) -> str:
    """The largest exact unit, ``65536`` -> ``"64k"``; inverse of parse."""
    if size < 0:
        raise ValueError("negative size")
    for unit in ("g", "m", "k"):
        factor = _SIZE_FACTORS[unit]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_address(text: str, *, listen: bool = False) -> Address:
    """``HOST:PORT`` or ``[IPv6]:PORT``; with ``listen``, also ``*:PORT`` and
    a bare ``PORT`` (both mean all IPv4 addresses, as in nginx).

    Hostnames are kept as written: they are resolved at run time.
    """
    if listen and _NUMBER.fullmatch(text):
        return Address(ANY_HOST, _port(text, text))
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise UnitError(f"invalid address {quote(text)}, a port is required")
        return Address(_ipv6(host, text), _port(port, text))
    host, sep, port = text.rpartition(":")
    if not sep:
        raise UnitError(f"invalid address {quote(text)}, a port is required")
    if ":" in host:
        raise UnitError(f"invalid address {quote(text)}, IPv6 addresses need brackets: [::1]:80")
    if host == "*" and listen:
        host = ANY_HOST
    return Address(_host(host, text), _port(port, text))


def _port(port: str, text: str) -> int:
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise UnitError(f"invalid address {quote(text)}, the port must be 1-65535")
    return int(port)


def _ipv6(host: str, text: str) -> str:
    try:
        # Compressed form, so "[0::1]" and "[::1]" are the same listen address.
        return ipaddress.IPv6Address(host).compressed
    except ValueError:
        raise UnitError(f"invalid address {quote(text)}") from None


def _host(host: str, text: str) -> str:
    if _IPV4ISH.fullmatch(host):
        # All digits and dots: an IPv4 literal or a typo, never a hostname.
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise UnitError(f"invalid address {quote(text)}") from None
    name = host.removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.fullmatch(x) for x in labels):
        raise UnitError(f"invalid address {quote(text)}")
    return host
