"""Receive-side flow control (RFC 9113 section 6.9): what a peer may send us.

``Window`` is the base of both ``Stream`` and ``Connection``, each being
the window of what the peer may send on it; a base class rather than an
object of its own, as one is made per stream on the hot path.

DATA is acknowledged only when the driver has forwarded it (``credit``), so a
slow reader on the far side slows the sender on this side. Credit goes back in
a WINDOW_UPDATE once a quarter of the initial window is owed, not per frame.
The send side is a plain int (``send_window``) the relay reads per message.
"""

from __future__ import annotations

_NEVER = 2**63  # a threshold no debt reaches


class Window:
    """``recv_window``: what the peer may still send (a frame of ``n``
    flow-controlled bytes takes ``n``; below 0 the peer overran it, a
    FLOW_CONTROL_ERROR); ``owed``: bytes consumed and forwarded whose credit
    is not yet announced; ``credit_threshold``: the debt announced at once."""

    __slots__ = ("recv_window", "owed", "credit_threshold")

    def __init__(self, initial: int) -> None:
        self.recv_window = initial
        self.owed = 0
        self.credit_threshold = initial >> 2

    def credit(self, n: int) -> int:
        """``n`` consumed bytes were forwarded. Returns the WINDOW_UPDATE
        increment to send now (the whole debt, once it reaches the
        threshold), else 0."""
        owed = self.owed + n
        if owed < self.credit_threshold:
            self.owed = owed
            return 0
        self.owed = 0
        self.recv_window += owed
        return owed

    def withhold_credit(self) -> None:
        """No WINDOW_UPDATE may go out any more (the connection is closed):
        from here credit only adds to the debt, unannounced."""
        self.credit_threshold = _NEVER
