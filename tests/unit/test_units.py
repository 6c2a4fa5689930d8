"""Durations, sizes and addresses as written in the configuration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.model import Address
from proxy.config.units import (
    MAX_DURATION_MS,
    MAX_SIZE,
    UnitError,
    format_duration,
    format_size,
    parse_address,
    parse_duration,
    parse_size,
    parse_timeout,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("30", 30.0),  # bare number: seconds, as nginx
        ("500ms", 0.5),
        ("5s", 5.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("007s", 7.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5x",
        "s",
        "1.5s",
        "-1",
        " 1s",
        "1s ",
        "1S",
        "1s1m",
        "1s1s",
        "5ms5s",
        "1w",
        "1m30",
        "²",
        "١s",
        "off",
        "1 s",
    ],
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_duration(text)
    assert str(info.value).startswith("invalid duration ")


def test_duration_limits() -> None:
    assert parse_duration(f"{MAX_DURATION_MS}ms") == MAX_DURATION_MS / 1000
    for text in (f"{MAX_DURATION_MS + 1}ms", "9" * 19, "9" * 5000, "9" * 5000 + "s"):
        with pytest.raises(UnitError):
            parse_duration(text)
    with pytest.raises(UnitError, match="too large"):
        parse_duration(f"{MAX_DURATION_MS}s")


def test_timeouts() -> None:
    assert parse_timeout("off") is None
    assert parse_timeout("0") is None
    assert parse_timeout("0ms") is None
    assert parse_timeout("60") == 60.0


@given(st.integers(min_value=0, max_value=MAX_DURATION_MS))
def test_duration_round_trip(ms: int) -> None:
    text = format_duration(ms / 1000)
    assert parse_duration(text) == ms / 1000
    assert format_duration(parse_duration(text)) == text


@given(
    st.integers(min_value=0, max_value=24_000),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 9999),
)
def test_compound_durations_add_up(d: int, h: int, m: int, s: int, ms: int) -> None:
    text = f"{d}d{h}h{m}m{s}s{ms}ms"  # nginx also allows "90m": no carry rule
    total_ms = (((d * 24 + h) * 60 + m) * 60 + s) * 1000 + ms
    assert parse_duration(text) == total_ms / 1000


def test_format_duration_examples() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(90) == "1m30s"
    assert format_duration(0.25) == "250ms"
    assert format_duration(300) == "5m"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("512", 512),
        ("1k", 1024),
        ("1K", 1024),
        ("16m", 16 << 20),
        ("2M", 2 << 20),
        ("1g", 1 << 30),
        ("1G", 1 << 30),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "k", "1.5k", "-1", "1kb", "1t", "1 k", "9" * 20, "9" * 19 + "g"]
)
def test_bad_sizes(text: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_size(text)
    assert str(info.value).startswith("invalid size ")


@given(st.integers(min_value=0, max_value=MAX_SIZE))
def test_size_round_trip(size: int) -> None:
    text = format_size(size)
    assert parse_size(text) == size


def test_format_size_picks_the_largest_exact_unit() -> None:
    assert [format_size(n) for n in (0, 1000, 1024, 1536, 3 << 20, 1 << 30)] == [
        "0",
        "1000",
        "1k",
        "1536",
        "3m",
        "1g",
    ]


@pytest.mark.parametrize(
    ("text", "listen", "address"),
    [
        ("127.0.0.1:80", False, Address("127.0.0.1", 80)),
        ("[::1]:50051", False, Address("::1", 50051)),
        ("[0:0::1]:1", False, Address("::1", 1)),
        ("[fe80::1%eth0]:1", False, Address("fe80::1%eth0", 1)),
        ("backend-1.example.com:443", False, Address("backend-1.example.com", 443)),
        ("my_service:65535", False, Address("my_service", 65535)),
        ("8080", True, Address("0.0.0.0", 8080)),
        ("*:8080", True, Address("0.0.0.0", 8080)),
        ("[::]:8080", True, Address("::", 8080)),
    ],
)
def test_addresses(text: str, listen: bool, address: Address) -> None:
    assert parse_address(text, listen=listen) == address


@pytest.mark.parametrize(
    ("text", "listen"),
    [
        ("8080", False),  # a bare port is only for listen
        ("*:8080", False),
        ("host", False),
        ("host", True),
        ("host:", False),
        (":80", False),
        ("host:0", False),
        ("host:65536", False),
        ("host:+80", False),
        ("host:٨٠", False),
        ("::1:80", False),
        ("[::1]", False),
        ("[::1]80", False),
        ("[1.2.3.4]:80", False),
        ("1.2.3:80", False),
        ("256.1.1.1:80", False),
        ("01.2.3.4:80", False),
        ("-host:80", False),
        ("a..b:80", False),
        ("h/x:80", False),
        ("h st:80", False),
        ("x" * 64 + ":80", False),
    ],
)
def test_bad_addresses(text: str, listen: bool) -> None:
    with pytest.raises(UnitError) as info:
        parse_address(text, listen=listen)
    assert str(info.value).startswith("invalid address ")


@given(st.ip_addresses(), st.integers(1, 65535))
def test_address_round_trip(ip: object, port: int) -> None:
    text = f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"
    address = parse_address(text)
    assert address.port == port
    assert parse_address(str(address)) == address
