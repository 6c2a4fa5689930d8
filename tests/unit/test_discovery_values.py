"""Values under an etcd prefix -> endpoints (proxy/discovery/values.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.model import Address
from proxy.discovery.values import canonical_value, parse_value

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_plain_host_port() -> None:
    s = parse_value(b" 10.0.0.1:50051\n")
    assert (s.address, s.weight, s.meta) == (Address("10.0.0.1", 50051), 1, ())


def test_plain_ipv6_and_hostname() -> None:
    assert parse_value(b"[::1]:80").address == Address("::1", 80)
    assert parse_value(b"users-1.svc:443").address == Address("users-1.svc", 443)


def test_canonical_json() -> None:
    s = parse_value(b'{"address": "10.0.0.2:1", "weight": 3, "meta": {"version": "v1", "z": 2}}')
    assert s.address == Address("10.0.0.2", 1)
    assert s.weight == 3
    assert s.meta == (("version", "v1"), ("z", "2"))


def test_canonical_defaults() -> None:
    s = parse_value(b'{"address": "10.0.0.2:1"}')
    assert (s.weight, s.meta) == (1, ())


def test_grpc_lb_style() -> None:
    value = b'{"Op": 0, "Addr": "10.0.0.3:7", "Metadata": {"weight": "4", "version": "v2"}}'
    s = parse_value(value)
    assert (s.address, s.weight, s.meta) == (Address("10.0.0.3", 7), 4, (("version", "v2"),))


def test_grpc_lb_metadata_not_an_object() -> None:
    s = parse_value(b'{"Addr": "10.0.0.3:7", "Metadata": "opaque"}')
    assert (s.weight, s.meta) == (1, ())
    assert parse_value(b'{"Addr": "10.0.0.3:7", "Metadata": null}').meta == ()


def test_go_micro_node() -> None:
    value = {
        "node": {
            "id": "users-1",
            "address": "10.0.0.4:9",
            "version": "v1",
            "metadata": {"zone": "a", "weight": "2"},
        }
    }
    s = parse_value(json.dumps(value).encode())
    assert s.address == Address("10.0.0.4", 9)
    assert s.weight == 2
    assert s.meta == (("id", "users-1"), ("version", "v1"), ("zone", "a"))


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"nonsense",
        b"10.0.0.1",
        b"10.0.0.1:0",
        b"10.0.0.1:99999",
        b"::1:80",
        b"\xff\xfe",
        b"{",
        b"[1, 2]",
        b'"10.0.0.1:80"',
        b'{"other": 1}',
        b'{"address": 5}',
        b'{"address": "10.0.0.1:80", "weight": 0}',
        b'{"address": "10.0.0.1:80", "weight": true}',
        b'{"address": "10.0.0.1:80", "weight": 1.5}',
        b'{"address": "10.0.0.1:80", "meta": [1]}',
        b'{"Addr": "x"}',
        b'{"node": "10.0.0.1:80"}',
        b'{"node": {"id": "x"}}',
        b"[" * 100_000,
    ],
)
def test_bad_values(value: bytes) -> None:
    with pytest.raises(ValueError):
        parse_value(value)


def test_canonical_round_trip() -> None:
    text = canonical_value("10.0.0.9:5", 2, {"version": "v1"})
    s = parse_value(text.encode())
    assert (str(s.address), s.weight, s.meta) == ("10.0.0.9:5", 2, (("version", "v1"),))


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_value_error(value: bytes) -> None:
    try:
        parse_value(value)
    except ValueError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["address", "Addr", "node", "weight", "meta", "Metadata"]),
        _json,
        max_size=4,
    )
)
def test_any_json_object_parses_or_raises_value_error(doc: dict) -> None:
    try:
        s = parse_value(json.dumps(doc).encode())
    except ValueError:
        return
    assert s.weight >= 1
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in s.meta)


@SETTINGS
@given(
    st.integers(1, 65535),
    st.integers(1, 1000),
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3),
)
def test_canonical_values_round_trip(port: int, weight: int, meta: dict[str, str]) -> None:
    s = parse_value(canonical_value(f"127.0.0.1:{port}", weight, meta).encode())
    assert s.address == Address("127.0.0.1", port)
    assert s.weight == weight
    assert dict(s.meta) == meta
