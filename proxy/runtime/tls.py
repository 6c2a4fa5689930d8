"""TLS handshakes on trio streams, both sides (the contexts come from the
config: proxy/config/tls.py, built when the file loads).

ALPN: Python's ssl cannot fail a handshake on an ALPN mismatch. When a client
offers no protocol we share (or no ALPN at all), OpenSSL's selection callback
in CPython answers "no overlap, go on without ALPN" and the handshake
completes; so a client whose handshake did not select ``h2`` is closed right
after it, before a byte of application data is read or written.
"""

from __future__ import annotations

import logging
import ssl

import trio

from proxy.security.tls import subject_of

log = logging.getLogger("grpc_proxy.tls")


class HandshakeFailed(Exception):
    """``str()``: why, for logs and for UNAVAILABLE messages."""


def _reason(e: BaseException) -> str:
    cause = e.__cause__ if e.__cause__ is not None else e
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return (cause.reason or str(cause)).lower().replace("_", " ")
    if isinstance(cause, trio.BrokenResourceError | OSError) or not str(cause):
        return "connection closed during the handshake"
    return str(cause)


async def server_handshake(
    stream: trio.abc.Stream, context: ssl.SSLContext, timeout: float
) -> tuple[trio.SSLStream[trio.abc.Stream], str | None]:
    """Handshake as the server, within ``timeout``; returns the TLS stream and
    the verified client subject (None without a client certificate).
    Raises HandshakeFailed (timeout, bad client certificate, no ALPN h2)."""
    tls = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
    try:
        with trio.fail_after(timeout):
            await tls.do_handshake()
    except trio.TooSlowError:
        raise HandshakeFailed("TLS handshake timed out") from None
    except trio.BrokenResourceError as e:
        raise HandshakeFailed(f"TLS handshake failed: {_reason(e)}") from None
    if tls.selected_alpn_protocol() != "h2":
        raise HandshakeFailed("TLS client did not negotiate ALPN h2")
    return tls, subject_of(tls.getpeercert())


async def client_handshake(
    stream: trio.abc.Stream, context: ssl.SSLContext, server_name: str
) -> trio.SSLStream[trio.abc.Stream]:
    """Handshake as the client (SNI and verification by ``server_name``);
    the caller's deadline bounds it. Raises HandshakeFailed."""
    tls = trio.SSLStream(stream, context, server_hostname=server_name, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as e:
        raise HandshakeFailed(f"TLS handshake failed: {_reason(e)}") from None
    alpn = tls.selected_alpn_protocol()
    if alpn not in (None, "h2"):  # None: a server without ALPN, taken as prior knowledge
        raise HandshakeFailed(f"upstream negotiated ALPN {alpn!r}, not h2")
    return tls
