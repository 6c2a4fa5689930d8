"""Active health checks, pure part: the probe's bytes, the verdict on an
answer, and the fails/passes rule."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2
from hypothesis import given
from hypothesis import strategies as st

from proxy.balancing import health
from proxy.balancing.endpoint import Endpoint
from proxy.balancing.pool import PoolSnapshot
from proxy.config.model import Address, HealthCheck

OK_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]
OK_TRAILERS = [(b"grpc-status", b"0")]


def message(status: int) -> bytes:
    raw = health_pb2.HealthCheckResponse(status=status).SerializeToString()  # type: ignore[attr-defined]
    return b"\x00" + len(raw).to_bytes(4, "big") + raw


@given(st.text(max_size=300))
def test_request_body_matches_protobuf(service: str) -> None:
    raw = health_pb2.HealthCheckRequest(service=service).SerializeToString()  # type: ignore[attr-defined]
    assert health.request_body(service) == b"\x00" + len(raw).to_bytes(4, "big") + raw


def test_request_headers_are_a_grpc_call() -> None:
    h = dict(health.request_headers("10.0.0.1:5"))
    assert h[b":path"] == b"/grpc.health.v1.Health/Check"
    assert h[b"te"] == b"trailers" and h[b"content-type"] == b"application/grpc"
    assert h[b":authority"] == b"10.0.0.1:5"


@pytest.mark.parametrize("status", [0, 1, 2, 3, 300])
def test_response_status_decodes_protobuf(status: int) -> None:
    assert health.response_status(message(status)) == status


def test_response_status_skips_unknown_fields_and_rejects_garbage() -> None:
    extra = b"\x12\x03abc\x08\x01"  # field 2 (string) then status=1
    assert health.response_status(b"\x00" + len(extra).to_bytes(4, "big") + extra) == 1
    for bad in (
        b"",
        b"\x01\x00\x00\x00\x00",
        b"\x00\x00\x00\x00\x05\x08",
        b"\x00\x00\x00\x00\x01\x08",
    ):
        with pytest.raises(ValueError):
            health.response_status(bad)


@pytest.mark.parametrize(
    ("headers", "body", "trailers", "verdict"),
    [
        (OK_HEADERS, message(1), OK_TRAILERS, ""),
        (OK_HEADERS, message(2), OK_TRAILERS, "NOT_SERVING"),
        (OK_HEADERS, message(3), OK_TRAILERS, "SERVICE_UNKNOWN"),
        (OK_HEADERS, message(0), OK_TRAILERS, "UNKNOWN"),
        (OK_HEADERS, message(1), None, "no trailers"),
        (OK_HEADERS, message(1), [(b"grpc-status", b"2")], "grpc-status 2"),
        (
            OK_HEADERS + [(b"grpc-status", b"12"), (b"grpc-message", b"no health")],
            b"",
            None,
            "grpc-status 12: no health",
        ),
        ([(b":status", b"503")], b"", None, "HTTP status 503"),
        (None, b"", None, "no response"),
        (
            OK_HEADERS,
            b"\x00\x00",
            OK_TRAILERS,
            "bad HealthCheckResponse: not one uncompressed gRPC message",
        ),
    ],
)
def test_verdict(headers: list | None, body: bytes, trailers: list | None, verdict: str) -> None:
    assert health.verdict(headers, body, trailers) == verdict


def test_fails_in_a_row_take_out_and_passes_in_a_row_bring_back() -> None:
    ep = Endpoint(Address("127.0.0.1", 1))
    check = HealthCheck(fails=2, passes=3)
    assert not health.record(ep.state, False, check) and ep.state.healthy
    assert not health.record(ep.state, True, check)  # the run of failures is broken
    assert not health.record(ep.state, False, check) and ep.state.healthy
    assert health.record(ep.state, False, check) and not ep.state.healthy
    assert not ep.available(0.0)
    assert not health.record(ep.state, True, check)
    assert not health.record(ep.state, True, check)
    assert not health.record(ep.state, False, check)  # run of passes broken
    for _ in range(2):
        assert not health.record(ep.state, True, check)
    assert health.record(ep.state, True, check) and ep.state.healthy and ep.available(0.0)


def test_unhealthy_endpoint_gets_no_calls_but_keeps_its_streams() -> None:
    a, b = Endpoint(Address("127.0.0.1", 1)), Endpoint(Address("127.0.0.1", 2))
    pool = PoolSnapshot("u", (a, b), (), 1.0)
    a.state.active = 3  # in flight: nothing cuts them
    health.record(a.state, False, HealthCheck(fails=1))
    assert {pool.pick(0.0) for _ in range(10)} == {b}
    assert a.state.active == 3
