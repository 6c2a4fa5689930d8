"""Active health checks, the pure part: the grpc.health.v1 probe on the wire
and the fails/passes rule that flips ``EndpointState.healthy``.

The probe is ``POST /grpc.health.v1.Health/Check`` with a HealthCheckRequest
(field 1: ``service``, a string); the answer passes only with HTTP 200,
grpc-status 0 and a HealthCheckResponse whose field 1 (``status``) is
SERVING. The messages are encoded by hand: two fields do not need protobuf.
"""

from __future__ import annotations

from proxy.balancing.endpoint import EndpointState
from proxy.config.model import HealthCheck
from proxy.http2.hpack_codec import HeaderList

PATH = b"/grpc.health.v1.Health/Check"
SERVING = 1
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
MAX_BODY = 4096  # a HealthCheckResponse is a few bytes; more is not a health server


def request_headers(authority: str) -> HeaderList:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", PATH),
        (b":authority", authority.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"user-agent", b"grpc-proxy-health"),
    ]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def request_body(service: str) -> bytes:
    """One gRPC message (5-byte prefix) holding HealthCheckRequest{service}."""
    raw = service.encode()
    msg = b"\x0a" + _varint(len(raw)) + raw if raw else b""  # proto3 omits ""
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def response_status(body: bytes) -> int:
    """The ``status`` of the HealthCheckResponse in ``body`` (one gRPC
    message); ValueError if it is not one. Unknown fields are skipped."""
    if len(body) < 5 or body[0] != 0:
        raise ValueError("not one uncompressed gRPC message")
    size = int.from_bytes(body[1:5], "big")
    msg = body[5:]
    if len(msg) != size:
        raise ValueError("gRPC message length mismatch")
    status = 0  # proto3: an absent field is its zero value, UNKNOWN
    pos = 0
    while pos < len(msg):
        tag, pos = _read_varint(msg, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(msg, pos)
            if field == 1:
                status = value
        elif wire == 2:
            n, pos = _read_varint(msg, pos)
            pos += n
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if pos != len(msg):
        raise ValueError("truncated message")
    return status


def verdict(headers: HeaderList | None, body: bytes, trailers: HeaderList | None) -> str:
    """ "" if the probe's answer says SERVING, else why not."""
    if headers is None:
        return "no response"
    fields = dict(headers)
    if fields.get(b":status") != b"200":
        return f"HTTP status {fields.get(b':status', b'?').decode('latin-1')}"
    if b"grpc-status" in fields:  # trailers-only
        trailers = headers
    if trailers is None:
        return "no trailers"
    end = dict(trailers)
    code = end.get(b"grpc-status", b"")
    if code != b"0":
        message = end.get(b"grpc-message", b"").decode("latin-1")
        return f"grpc-status {code.decode('latin-1') or '?'}" + (f": {message}" if message else "")
    try:
        status = response_status(body)
    except ValueError as e:
        return f"bad HealthCheckResponse: {e}"
    if status != SERVING:
        return STATUS_NAMES.get(status, f"status {status}")
    return ""


def record(ep: EndpointState, passed: bool, check: HealthCheck) -> bool:
    """Count one probe result; True if ``ep.healthy`` changed. ``fails``
    failures in a row take it out, ``passes`` passes in a row bring it back
    (nginx Plus's rule)."""
    if passed:
        ep.checks_failed = 0
        ep.checks_passed += 1
        if not ep.healthy and ep.checks_passed >= check.passes:
            ep.healthy = True
            return True
    else:
        ep.checks_passed = 0
        ep.checks_failed += 1
        if ep.healthy and ep.checks_failed >= check.fails:
            ep.healthy = False
            return True
    return False
