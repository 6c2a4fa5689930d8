"""Header list checks of RFC 9113 section 8.2/8.3. Each returns an error
message, or None when the list is well formed (a malformed message is a
stream error of type PROTOCOL_ERROR)."""

from __future__ import annotations

from proxy.http2.hpack_codec import HeaderBlock, HeaderList

# Connection-specific fields are forbidden in HTTP/2 (RFC 9113 section 8.2.2).
CONNECTION_HEADERS = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)
_REQUEST_PSEUDO = frozenset([b":method", b":scheme", b":path", b":authority"])
_BAD_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ \t\r\n\x00:")
_BAD_VALUE_CHARS = frozenset(b"\r\n\x00")


def _check_regular(name: bytes, value: bytes) -> str | None:
    if not name or _BAD_NAME_CHARS.intersection(name):
        return f"invalid header name {name[:40]!r}"
    if name in CONNECTION_HEADERS:
        return f"connection-specific header {name.decode('latin-1')}"
    if name == b"te" and value != b"trailers":
        return "te header other than trailers"
    if (
        _BAD_VALUE_CHARS.intersection(value)
        or value[:1] in (b" ", b"\t")
        or (value[-1:] in (b" ", b"\t"))
    ):
        return f"invalid value for header {name.decode('latin-1')}"
    return None


def check_request(headers: HeaderList) -> str | None:
    seen: set[bytes] = set()
    regular = False
    method = b""
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                return "pseudo-header after regular header"
            if name not in _REQUEST_PSEUDO:
                return f"unknown pseudo-header {name.decode('latin-1')}"
            if name in seen:
                return f"repeated pseudo-header {name.decode('latin-1')}"
            seen.add(name)
            if name == b":method":
                method = value
            elif name == b":path" and not value:
                return "empty :path"
        else:
            regular = True
            err = _check_regular(name, value)
            if err:
                return err
    if method == b"CONNECT":
        return "CONNECT is not supported"
    if not {b":method", b":scheme", b":path"} <= seen:
        return "missing pseudo-header"
    return None


def check_response(headers: HeaderList) -> str | None:
    status = False
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if regular or name != b":status" or status:
                return "bad response pseudo-header"
            if len(value) != 3 or not value.isdigit():
                return "bad :status"
            status = True
        else:
            regular = True
            err = _check_regular(name, value)
            if err:
                return err
    return None if status else "missing :status"


def check_trailers(headers: HeaderList) -> str | None:
    for name, value in headers:
        if name[:1] == b":":
            return "pseudo-header in trailers"
        err = _check_regular(name, value)
        if err:
            return err
    return None


def content_length(headers: HeaderList) -> int | None:
    """The content-length value (-1 if malformed), or None; read once per block."""
    if type(headers) is HeaderBlock:
        return headers.content_length
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None
