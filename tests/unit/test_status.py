from __future__ import annotations

import pytest

from proxy.http2.frames import ErrorCode
from proxy.status import (
    Failure,
    GrpcStatus,
    answer_for,
    answer_for_reset,
    encode_message,
    error_code_name,
    status_for_reset,
    trailers_only,
)


@pytest.mark.parametrize(
    ("failure", "status", "http"),
    [
        (Failure.NO_ROUTE, GrpcStatus.UNIMPLEMENTED, 200),
        (Failure.BAD_CONTENT_TYPE, GrpcStatus.UNKNOWN, 415),
        (Failure.NO_ENDPOINT, GrpcStatus.UNAVAILABLE, 200),
        (Failure.NO_SERVERS, GrpcStatus.UNAVAILABLE, 200),
        (Failure.CONNECT_FAILED, GrpcStatus.UNAVAILABLE, 200),
        (Failure.UPSTREAM_LOST, GrpcStatus.UNAVAILABLE, 200),
        (Failure.READ_TIMEOUT, GrpcStatus.UNAVAILABLE, 200),
        (Failure.DEADLINE, GrpcStatus.DEADLINE_EXCEEDED, 200),
        (Failure.CONNECTION_CLOSING, GrpcStatus.UNAVAILABLE, 200),
        (Failure.UPSTREAM_RESET_MIDSTREAM, GrpcStatus.CANCELLED, 200),
        (Failure.CLIENT_CANCELLED, GrpcStatus.CANCELLED, 200),
    ],
)
def test_failure_table(failure: Failure, status: GrpcStatus, http: int) -> None:
    a = answer_for(failure, path="/x", upstream="u", detail="d")
    assert (a.grpc_status, a.http_status) == (status, http)
    assert a.message and "{" not in a.message


def test_every_failure_has_an_answer() -> None:
    for failure in Failure:
        assert answer_for(failure).message


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.CANCEL, GrpcStatus.CANCELLED),
        (ErrorCode.REFUSED_STREAM, GrpcStatus.UNAVAILABLE),
        (ErrorCode.ENHANCE_YOUR_CALM, GrpcStatus.RESOURCE_EXHAUSTED),
        (ErrorCode.INADEQUATE_SECURITY, GrpcStatus.PERMISSION_DENIED),
        (ErrorCode.INTERNAL_ERROR, GrpcStatus.INTERNAL),
        (0x99, GrpcStatus.INTERNAL),
    ],
)
def test_reset_mapping(code: int, status: GrpcStatus) -> None:
    assert status_for_reset(code) == status


@pytest.mark.parametrize(
    ("code", "started", "status", "message"),
    [
        (
            ErrorCode.REFUSED_STREAM,
            False,
            GrpcStatus.UNAVAILABLE,
            "upstream reset the stream: REFUSED_STREAM",
        ),
        (
            ErrorCode.ENHANCE_YOUR_CALM,
            False,
            GrpcStatus.RESOURCE_EXHAUSTED,
            "upstream reset the stream: ENHANCE_YOUR_CALM",
        ),
        (0x99, False, GrpcStatus.INTERNAL, "upstream reset the stream: 0x99"),
        # Mid-response the client's stream is reset with CANCEL: CANCELLED, whatever the code.
        (
            ErrorCode.INTERNAL_ERROR,
            True,
            GrpcStatus.CANCELLED,
            "upstream reset the stream: INTERNAL_ERROR",
        ),
    ],
)
def test_upstream_reset_answers(code: int, started: bool, status: GrpcStatus, message: str) -> None:
    a = answer_for_reset(code, started)
    assert (a.grpc_status, a.message, a.http_status) == (status, message, 200)


def test_error_code_names() -> None:
    assert error_code_name(ErrorCode.CANCEL) == "CANCEL"
    assert error_code_name(0x1F) == "0x1f"


def test_grpc_message_is_percent_encoded() -> None:
    assert encode_message("idle 100% \u00e9") == b"idle 100%25 %C3%A9"
    headers = dict(trailers_only(GrpcStatus.UNAVAILABLE, "x"))
    assert headers[b"grpc-status"] == b"14" and headers[b":status"] == b"200"


def test_an_empty_upstream_is_named() -> None:
    assert (
        answer_for(Failure.NO_SERVERS, upstream="users").message == "upstream users has no servers"
    )
    assert (
        answer_for(Failure.NO_ENDPOINT, upstream="users").message == "no healthy upstream in users"
    )
