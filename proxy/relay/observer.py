"""What the relay reports to observers (metrics, access log): the interface,
so the relay does not depend on who listens. Every call ends in exactly one
``call_ended`` or ``call_refused``; the rest are events counted by kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from proxy.relay.call import RelayStream
    from proxy.relay.link import Link
    from proxy.status import Answer


class CallObserver(Protocol):
    def call_ended(self, rs: RelayStream) -> None:
        """``rs`` is done (``rs.status``/``rs.error`` set if the proxy or the
        client ended it; otherwise the upstream's final headers tell)."""

    def call_refused(self, link: Link, path: str, answer: Answer, now: float) -> None:
        """A request the proxy answered itself without routing it."""

    def retried(self, rs: RelayStream) -> None:
        """``rs`` goes to another endpoint (or the same one again)."""

    def timed_out(self, kind: str) -> None:
        """read, send, connect, deadline; keepalive (issue 5)."""

    def protocol_error(self, kind: str) -> None:
        """reset, bad_frame, http1; flood (issue 8)."""
