from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.grpc_timeout import parse_grpc_timeout


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"1S", 1.0),
        (b"200m", 0.2),
        (b"5M", 300.0),
        (b"1H", 3600.0),
        (b"7u", 7e-6),
        (b"99999999n", 0.099999999),
    ],
)
def test_units(value: bytes, seconds: float) -> None:
    assert parse_grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"1", b"1x", b"123456789S", b"-1S", b"1.5S"])
def test_malformed_is_ignored(value: bytes) -> None:
    assert parse_grpc_timeout(value) is None


@given(st.binary(max_size=12))
def test_never_raises(value: bytes) -> None:
    result = parse_grpc_timeout(value)
    assert result is None or result >= 0
