"""Why an upstream connect failed, as the client's grpc-message, the access log
and the log line say it (proxy/runtime/upstream.py)."""

from __future__ import annotations

import errno
import socket

import pytest
import trio

from proxy.runtime.upstream import _os_reason


def _trio_style(*errors: OSError) -> OSError:
    """What trio.open_tcp_stream raises: a plain OSError, the attempts as its cause."""
    msg = "all attempts to connect to 127.0.0.1:1 failed"
    try:
        raise OSError(msg) from ExceptionGroup(msg, list(errors))
    except OSError as e:
        return e


def _refused() -> OSError:
    return ConnectionRefusedError(
        errno.ECONNREFUSED, "Error connecting to ('127.0.0.1', 1): Connection refused"
    )


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_trio_style(_refused()), "connection refused"),
        (_trio_style(_refused(), _refused()), "connection refused"),
        (
            _trio_style(
                _refused(), OSError(errno.ENETUNREACH, "Error connecting to ('::1', 1): x")
            ),
            "connection refused, network is unreachable",
        ),
        (
            _trio_style(OSError(errno.EHOSTUNREACH, "Error connecting to (...): No route to host")),
            "no route to host",
        ),
        (_refused(), "connection refused"),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "name or service not known",
        ),
        (OSError("something else"), "something else"),
    ],
)
def test_reason(error: OSError, reason: str) -> None:
    assert _os_reason(error) == reason


def test_a_real_refused_connect_says_connection_refused() -> None:
    with socket.socket() as s:  # a port nothing listens on (bound, not listening)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

        async def connect() -> str:
            try:
                await trio.open_tcp_stream("127.0.0.1", port)
            except OSError as e:
                return _os_reason(e)
            return "connected"

        assert trio.run(connect) == "connection refused"
