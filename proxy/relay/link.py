"""A relay-side view of one HTTP/2 connection: its core and who waits on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.http2.connection import Connection

if TYPE_CHECKING:
    from proxy.balancing.endpoint import Endpoint
    from proxy.config.model import Server
    from proxy.relay.call import RelayStream
    from proxy.relay.reply import Reply
    from proxy.security.access import ClientIdentity

# Above this many queued bytes a link takes no more DATA until its writer has
# flushed: the bound on a connection's output buffer.
OUTPUT_HIGH_WATER = 256 << 10


class Link:
    """``wake`` is set by the I/O layer: called once per batch when the link has
    output for its writer."""

    __slots__ = ("core", "blocked", "wake", "server", "endpoint", "peer", "client")

    def __init__(
        self,
        core: Connection,
        *,
        server: Server | None = None,
        endpoint: Endpoint | None = None,
        peer: str = "",
    ) -> None:
        self.core = core
        # Streams with DATA waiting for this link's windows or writer (an ordered set).
        self.blocked: dict[RelayStream | Reply, None] = {}
        self.wake: Callable[[], object] | None = None
        self.server = server  # downstream links: the server block they were accepted by
        self.endpoint = endpoint  # upstream links
        self.peer = peer
        # Client links: a proxy.security.access.ClientIdentity (address, TLS subject).
        self.client: ClientIdentity | None = None

    def writable(self) -> bool:
        return self.core.out_size < OUTPUT_HIGH_WATER

    def __repr__(self) -> str:
        return f"Link({self.peer})"
