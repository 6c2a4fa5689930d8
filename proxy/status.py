"""Every way a call can fail at the proxy, mapped to what the client sees, in
one table. The proxy never answers a gRPC client with HTML or a bare reset
where a grpc-status can be given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from urllib.parse import quote

from proxy.http2.frames import ErrorCode


class GrpcStatus(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class Failure(Enum):
    NO_ROUTE = "no_route"
    BAD_CONTENT_TYPE = "bad_content_type"
    BAD_METHOD = "bad_method"
    NO_ENDPOINT = "no_endpoint"
    NO_SERVERS = "no_servers"  # the pool is empty (etcd-fed, nothing registered)
    CONNECT_FAILED = "connect_failed"
    UPSTREAM_LOST = "upstream_lost"
    UPSTREAM_RESET = "upstream_reset"  # before the response: the status depends on the code
    UPSTREAM_RESET_MIDSTREAM = "upstream_reset_midstream"  # the client gets RST_STREAM CANCEL
    CLIENT_CANCELLED = "client_cancelled"  # the client reset its stream: it sees nothing
    READ_TIMEOUT = "read_timeout"
    SEND_TIMEOUT = "send_timeout"
    DEADLINE = "deadline"
    CONNECTION_CLOSING = "connection_closing"
    SUBSET_MISS = "subset_miss"
    MAX_CONNS = "max_conns"
    QUEUE_TIMEOUT = "queue_timeout"
    FORBIDDEN = "forbidden"  # allow/deny
    UNAUTHENTICATED = "unauthenticated"  # auth_bearer_tokens


@dataclass(frozen=True, slots=True)
class Answer:
    """``http_status`` other than 200 is a plain HTTP error (not a gRPC call)."""

    grpc_status: GrpcStatus
    message: str
    http_status: int = 200


FAILURES: dict[Failure, Answer] = {
    Failure.NO_ROUTE: Answer(GrpcStatus.UNIMPLEMENTED, "no route for {path}"),
    Failure.BAD_CONTENT_TYPE: Answer(
        GrpcStatus.UNKNOWN, "content-type is not application/grpc", http_status=415
    ),
    Failure.BAD_METHOD: Answer(GrpcStatus.UNIMPLEMENTED, "gRPC requires POST", http_status=405),
    Failure.NO_ENDPOINT: Answer(GrpcStatus.UNAVAILABLE, "no healthy upstream in {upstream}"),
    Failure.NO_SERVERS: Answer(GrpcStatus.UNAVAILABLE, "upstream {upstream} has no servers"),
    Failure.CONNECT_FAILED: Answer(GrpcStatus.UNAVAILABLE, "upstream connect error: {detail}"),
    Failure.UPSTREAM_LOST: Answer(GrpcStatus.UNAVAILABLE, "upstream connection lost: {detail}"),
    # The status of UPSTREAM_RESET is RESET_TO_STATUS's for the code (answer_for_reset).
    Failure.UPSTREAM_RESET: Answer(GrpcStatus.INTERNAL, "upstream reset the stream: {code}"),
    Failure.UPSTREAM_RESET_MIDSTREAM: Answer(
        GrpcStatus.CANCELLED, "upstream reset the stream: {code}"
    ),
    # What metrics and the access log record; the client, gone, is sent nothing.
    Failure.CLIENT_CANCELLED: Answer(GrpcStatus.CANCELLED, "client cancelled"),
    Failure.READ_TIMEOUT: Answer(GrpcStatus.UNAVAILABLE, "stream idle timeout"),
    Failure.SEND_TIMEOUT: Answer(GrpcStatus.UNAVAILABLE, "stream send timeout"),
    Failure.DEADLINE: Answer(GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded at proxy"),
    # Graceful close ran out of grace (max_connection_age_grace, shutdown_timeout;
    # a drain says "shutdown").
    Failure.CONNECTION_CLOSING: Answer(
        GrpcStatus.UNAVAILABLE, "proxy closed the connection: {reason}"
    ),
    Failure.SUBSET_MISS: Answer(GrpcStatus.UNAVAILABLE, "no upstream endpoint matches {subset}"),
    Failure.MAX_CONNS: Answer(
        GrpcStatus.UNAVAILABLE, "every endpoint of {upstream} is at max_conns"
    ),
    Failure.QUEUE_TIMEOUT: Answer(
        GrpcStatus.UNAVAILABLE, "queue timeout: every endpoint of {upstream} is at max_conns"
    ),
    Failure.FORBIDDEN: Answer(GrpcStatus.PERMISSION_DENIED, "access forbidden by rule"),
    Failure.UNAUTHENTICATED: Answer(GrpcStatus.UNAUTHENTICATED, "{reason}"),
}

# An upstream RST_STREAM before any response, as gRPC's HTTP/2 mapping says.
RESET_TO_STATUS: dict[int, GrpcStatus] = {
    ErrorCode.NO_ERROR: GrpcStatus.INTERNAL,
    ErrorCode.PROTOCOL_ERROR: GrpcStatus.INTERNAL,
    ErrorCode.INTERNAL_ERROR: GrpcStatus.INTERNAL,
    ErrorCode.FLOW_CONTROL_ERROR: GrpcStatus.INTERNAL,
    ErrorCode.SETTINGS_TIMEOUT: GrpcStatus.INTERNAL,
    ErrorCode.STREAM_CLOSED: GrpcStatus.INTERNAL,
    ErrorCode.FRAME_SIZE_ERROR: GrpcStatus.INTERNAL,
    ErrorCode.REFUSED_STREAM: GrpcStatus.UNAVAILABLE,
    ErrorCode.CANCEL: GrpcStatus.CANCELLED,
    ErrorCode.COMPRESSION_ERROR: GrpcStatus.INTERNAL,
    ErrorCode.CONNECT_ERROR: GrpcStatus.INTERNAL,
    ErrorCode.ENHANCE_YOUR_CALM: GrpcStatus.RESOURCE_EXHAUSTED,
    ErrorCode.INADEQUATE_SECURITY: GrpcStatus.PERMISSION_DENIED,
    ErrorCode.HTTP_1_1_REQUIRED: GrpcStatus.INTERNAL,
}


def answer_for(failure: Failure, **details: str) -> Answer:
    a = FAILURES[failure]
    return Answer(a.grpc_status, a.message.format_map(_Default(details)), a.http_status)


def status_for_reset(code: int) -> GrpcStatus:
    return RESET_TO_STATUS.get(code, GrpcStatus.INTERNAL)


def answer_for_reset(code: int, started: bool) -> Answer:
    """An upstream RST_STREAM ``code``: before the response started, the status
    gRPC maps from the code (trailers-only); after it, the client's stream is
    reset with CANCEL, which it reports as CANCELLED."""
    name = error_code_name(code)
    if started:
        return answer_for(Failure.UPSTREAM_RESET_MIDSTREAM, code=name)
    a = answer_for(Failure.UPSTREAM_RESET, code=name)
    return Answer(status_for_reset(code), a.message, a.http_status)


def error_code_name(code: int) -> str:
    """An HTTP/2 error code by name (CANCEL), or in hex if it has none."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


class _Default(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


def encode_message(message: str) -> bytes:
    """grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2 spec)."""
    return quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode("ascii")


def trailers_only(status: GrpcStatus, message: str) -> list[tuple[bytes, bytes]]:
    return [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(int(status)).encode()),
        (b"grpc-message", encode_message(message)),
    ]


def trailers(status: GrpcStatus, message: str) -> list[tuple[bytes, bytes]]:
    return [(b"grpc-status", str(int(status)).encode()), (b"grpc-message", encode_message(message))]


def http_error(status: int, length: int) -> list[tuple[bytes, bytes]]:
    """Headers of a plain HTTP error whose body is ``length`` bytes of text."""
    return [
        (b":status", str(status).encode()),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(length).encode()),
    ]


# The gRPC status a client derives from a response without grpc-status, by
# HTTP status (gRPC's "HTTP to gRPC Status Code Mapping").
HTTP_TO_STATUS: dict[bytes, GrpcStatus] = {
    b"400": GrpcStatus.INTERNAL,
    b"401": GrpcStatus.UNAUTHENTICATED,
    b"403": GrpcStatus.PERMISSION_DENIED,
    b"404": GrpcStatus.UNIMPLEMENTED,
    b"429": GrpcStatus.UNAVAILABLE,
    b"502": GrpcStatus.UNAVAILABLE,
    b"503": GrpcStatus.UNAVAILABLE,
    b"504": GrpcStatus.UNAVAILABLE,
}
_STATUS_VALUES: dict[bytes, GrpcStatus] = {str(int(s)).encode(): s for s in GrpcStatus}


def status_of_final_headers(headers: Sequence[tuple[bytes, bytes]] | None) -> GrpcStatus:
    """The call's status from the upstream's trailers (or trailers-only
    headers): grpc-status, else the HTTP status mapping; no final headers at
    all (DATA ended the stream) is what clients report as INTERNAL."""
    if headers is None:
        return GrpcStatus.INTERNAL
    http = b""
    for name, value in headers:
        if name == b"grpc-status":
            return _STATUS_VALUES.get(value, GrpcStatus.UNKNOWN)
        if name == b":status":
            http = value
    if not http or http == b"200":
        return GrpcStatus.UNKNOWN
    return HTTP_TO_STATUS.get(http, GrpcStatus.UNKNOWN)
