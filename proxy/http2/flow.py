"""Receive-side flow control (RFC 9113 section 6.9), one ``Window`` per stream
and one for the connection.

DATA is acknowledged only when the driver has forwarded it (``credit``), so a
slow reader on the far side slows the sender on this side. Credit goes back in
a WINDOW_UPDATE once a quarter of the initial window is owed, not per frame.
The send side is two plain ints (``Stream.send_window``,
``Connection.send_window``): the relay reads them per message.
"""

from __future__ import annotations

_NEVER = 2**63  # a threshold no debt reaches


class Window:
    """``size``: what the peer may still send (a frame of ``n`` flow-controlled
    bytes takes ``n``; below 0 the peer overran it, a FLOW_CONTROL_ERROR);
    ``owed``: bytes consumed and forwarded whose credit is not yet announced."""

    __slots__ = ("size", "owed", "threshold")

    def __init__(self, initial: int) -> None:
        self.size = initial
        self.owed = 0
        self.threshold = initial >> 2

    def credit(self, n: int) -> int:
        """``n`` consumed bytes were forwarded. Returns the WINDOW_UPDATE
        increment to send now (the whole debt, once it reaches the
        threshold), else 0."""
        owed = self.owed + n
        if owed < self.threshold:
            self.owed = owed
            return 0
        self.owed = 0
        self.size += owed
        return owed

    def close(self) -> None:
        """No WINDOW_UPDATE may go out any more (the connection is closed):
        from here credit only adds to the debt, unannounced."""
        self.threshold = _NEVER
