"""Listen addresses: the sockets of one address, the ``server`` block that
serves it now, and the client connections accepted there.

A reload keeps the slot (and its sockets) of every address that stays, so no
connection is refused; it only points the slot, and the live connections, at
the new ``server`` block.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio

from proxy.config.model import Address, Listen, Server
from proxy.runtime.lifetime import LinkWatch

log = logging.getLogger("grpc_proxy")


class StartupError(Exception):
    """A clear, expected reason not to start (a port in use, say)."""


class ListenerSlot:
    def __init__(
        self, address: Address, server: Server, listeners: list[trio.SocketListener]
    ) -> None:
        self.address = address
        self.server = server
        self.listeners = listeners
        self.watches: set[LinkWatch] = set()
        self.scope = trio.CancelScope()  # the accept loop
        # Set once the slot stops accepting: connections still being set up
        # drain at once with this deadline.
        self.drain_deadline: float | None = None
        self.draining = False

    def set_server(self, server: Server) -> None:
        """New calls, on new and live connections, route by ``server``."""
        self.server = server
        for w in self.watches:
            w.link.server = server

    async def serve(
        self, handler: Callable[[trio.SocketStream], Awaitable[None]], connections: trio.Nursery
    ) -> None:
        """Accept until ``close``; connections run in ``connections``, so that
        closing the listener does not cut the connections it accepted (as
        ``trio.serve_listeners`` would)."""
        with self.scope:
            async with trio.open_nursery() as nursery:
                for listener in self.listeners:
                    nursery.start_soon(_accept_loop, listener, handler, connections)

    async def close(self, deadline: float | None, reason: str) -> None:
        """Stop accepting; drain every connection (two-phase GOAWAY), open
        streams running until ``deadline``."""
        self.draining = True
        self.drain_deadline = deadline
        self.scope.cancel()
        for listener in self.listeners:
            with trio.CancelScope(shield=True):
                await listener.aclose()
        for w in list(self.watches):
            w.drain(deadline, reason)


async def _accept_loop(
    listener: trio.SocketListener,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    connections: trio.Nursery,
) -> None:
    while True:
        try:
            stream = await listener.accept()
        except trio.ClosedResourceError:
            return
        except OSError as e:  # out of fds or buffers: wait, do not spin (as trio does)
            log.error("accept on %s failed: %s", listener.socket.getsockname(), e)
            await trio.sleep(0.1)
            continue
        connections.start_soon(handler, stream)


async def bind(
    listen: Listen, inherited: dict[Address, list[socket.socket]]
) -> list[trio.SocketListener]:
    """Listeners for ``listen``: sockets the master passed down, or new ones."""
    socks = inherited.pop(listen.address, None)
    if socks is not None:
        return [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in socks]
    host = listen.address.host
    try:
        return await trio.open_tcp_listeners(
            listen.address.port, host=None if host in ("*", "0.0.0.0", "") else host
        )
    except OSError as e:
        reason = e.strerror.lower() if e.strerror else str(e)
        raise StartupError(f"{where(listen)}cannot listen on {listen.address}: {reason}") from None


def where(listen: Listen) -> str:
    """``FILE:LINE: `` of the ``listen`` directive, for a message about it."""
    return f"{listen.source}: " if listen.source is not None else ""
