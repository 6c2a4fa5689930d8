"""A bug met while serving one upstream connection ends that connection only:
it is logged, its calls fail, and the nursery that holds every other
connection (and the process) carries on. A real socket to a backend that
sends its SETTINGS; the relay's event handler is made to fail."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import pytest
import trio

from proxy.balancing.endpoint import Endpoint
from proxy.config.model import Address
from proxy.relay.relay import Relay
from proxy.runtime.upstream import EndpointLinks, Upstreams
from tests.unit.frame_factory import FrameFactory


class BrokenRelay:
    """The relay, but its upstream event handler fails. A wrapper, as the
    compiled build's Relay (setup.py) takes no patched methods or subclasses."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._relay, name)

    def on_upstream_events(self, link: object, events: object) -> None:
        raise RuntimeError("a relay bug")


def test_an_error_in_one_upstream_connection_stays_there(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def backend(stream: trio.SocketStream) -> None:
        await stream.send_all(FrameFactory().settings())
        with trio.move_on_after(5):
            while await stream.receive_some(65536):
                pass

    async def main() -> str:
        relay = BrokenRelay(Relay({}, trio.current_time))
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    partial(trio.serve_tcp, backend, 0, host="127.0.0.1")
                )
                port = listeners[0].socket.getsockname()[1]
                upstreams = Upstreams(relay, nursery)  # type: ignore[arg-type]
                el = EndpointLinks(Endpoint(Address("127.0.0.1", port)))
                el.connecting = 1
                await upstreams._connect(el)  # returns: the error stayed inside
                nursery.cancel_scope.cancel()
        return "survived"

    with caplog.at_level(logging.ERROR, logger="grpc_proxy.upstream"):
        assert trio.run(main) == "survived"
    assert "upstream connection to 127.0.0.1:" in caplog.text
    assert "a relay bug" in caplog.text
