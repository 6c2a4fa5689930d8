"""The first call on a new upstream connection, whatever the backend sends
when the connection opens. grpc-js and grpc-go servers send a lone SETTINGS
frame; the proxy used to wait for a second frame before starting the calls
queued on that connection, so the first call after every start, reload or
reconnect hung until its deadline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Stack, addr, free_port, location, make_config, upstream
from scripted_backend import PREFACES, ScriptedBackend


@pytest.fixture(params=sorted(PREFACES))
def backend(request: pytest.FixtureRequest) -> Iterator[ScriptedBackend]:
    b = ScriptedBackend(request.param)
    try:
        yield b
    finally:
        b.close()


def test_first_call_on_a_fresh_proxy_gets_its_response(
    stack: Stack, backend: ScriptedBackend
) -> None:
    port = free_port()
    proxy = stack.proxy(
        make_config(
            port, [upstream("s", [addr(backend.port)])], [location("/echo.Echo/", "grpc_pass s")]
        )
    )
    client = stack.client(proxy.port)
    first = client.unary(b"first", timeout=5.0)
    assert first.ok, (first.code, first.details, proxy.stderr_tail())
    assert first.messages == [b"first"]
    assert first.elapsed < 2.0
    again = client.unary(b"again", timeout=5.0)
    assert again.ok and again.messages == [b"again"]
    assert backend.calls == 2
