"""The state of an HTTP/2 stream (RFC 9113 section 5.1), as tables.

Everything that decides a stream's next state is in this file, as h2's
stream.py: ``SERVER`` and ``CLIENT`` map ``(state, input)`` to the next state,
or to the ``Refusal`` (a stream error) that the peer's frame earns in that
state. A pair absent from a table is something this side does not do in that
state (sending on a stream closed for sending is ignored). ``ON_UNKNOWN`` says
what a frame means on a stream id without a ``Stream``: idle, or closed.
The connection applies inputs and acts on where they lead.

The open and half-closed states are each split in two by whether the response
has begun (its HEADERS sent by us as a server, received by us as a client):
before it, a client refuses DATA, a server's reset of the stream is an early
one (rapid reset, CVE-2023-44487), and a client reads the peer's HEADERS as
the response, not as trailers.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from proxy.http2 import frames as f
from proxy.http2.flow import Window

E = f.ErrorCode


class StreamState(IntEnum):
    IDLE = 0
    OPEN_UNANSWERED = 1
    OPEN = 2
    HALF_CLOSED_LOCAL_UNANSWERED = 3  # client: the whole request sent, no response yet
    HALF_CLOSED_LOCAL = 4
    HALF_CLOSED_REMOTE_UNANSWERED = 5  # server: the whole request received, no response yet
    HALF_CLOSED_REMOTE = 6
    CLOSED = 7  # END_STREAM both ways, reset by the peer, or its connection lost
    RESET = 8  # closed by our RST_STREAM: the peer's late frames are ignored
    # Only of ids without a Stream: never opened though a higher id was (RFC
    # 9113 section 5.1.1), or closed so long ago that it is forgotten.
    IMPLICITLY_CLOSED = 9


class StreamInput(IntEnum):
    SEND_HEADERS = 0
    SEND_DATA = 1
    SEND_END_STREAM = 2
    SEND_RST_STREAM = 3
    RECV_HEADERS = 4
    RECV_DATA = 5
    RECV_END_STREAM = 6
    RECV_RST_STREAM = 7  # or the connection was lost


class Refusal(NamedTuple):
    """The error a frame earns: a stream error, or with ``connection`` a
    connection error. ``reason`` may name ``{sid}``."""

    code: int
    reason: str
    connection: bool = False


S, In = StreamState, StreamInput
_OU, _O = S.OPEN_UNANSWERED, S.OPEN
_LU, _L = S.HALF_CLOSED_LOCAL_UNANSWERED, S.HALF_CLOSED_LOCAL
_RU, _R = S.HALF_CLOSED_REMOTE_UNANSWERED, S.HALF_CLOSED_REMOTE
LIVE = (_OU, _O, _LU, _L, _RU, _R)
UNANSWERED = frozenset((_OU, _LU, _RU))
RECEIVING = frozenset((_OU, _O, _LU, _L))  # the peer may send more: stream credit is due
ENDED = frozenset((S.CLOSED, S.RESET))
_CLOSED = S.CLOSED  # a module global reads faster than an enum member

_DATA_CLOSED = Refusal(E.STREAM_CLOSED, "DATA on a closed stream")
_HEADERS_CLOSED = Refusal(E.STREAM_CLOSED, "HEADERS after END_STREAM")

Transitions = dict[tuple[StreamState, StreamInput], "StreamState | Refusal"]

_BOTH_ROLES: Transitions = {
    # Sending, where our side is open. HEADERS after the first are trailers.
    **{(s, i): s for s in (_OU, _O, _RU, _R) for i in (In.SEND_HEADERS, In.SEND_DATA)},
    (_OU, In.SEND_END_STREAM): _LU,
    (_O, In.SEND_END_STREAM): _L,
    (_RU, In.SEND_END_STREAM): S.CLOSED,
    (_R, In.SEND_END_STREAM): S.CLOSED,
    # Receiving, where the peer's side is open.
    (_O, In.RECV_HEADERS): _O,
    (_L, In.RECV_HEADERS): _L,
    (_O, In.RECV_DATA): _O,
    (_L, In.RECV_DATA): _L,
    (_OU, In.RECV_END_STREAM): _RU,
    (_O, In.RECV_END_STREAM): _R,
    (_LU, In.RECV_END_STREAM): S.CLOSED,
    (_L, In.RECV_END_STREAM): S.CLOSED,
    # ... and where it is not: the peer ended it.
    (_RU, In.RECV_HEADERS): _HEADERS_CLOSED,
    (_R, In.RECV_HEADERS): _HEADERS_CLOSED,
    (_RU, In.RECV_DATA): _DATA_CLOSED,
    (_R, In.RECV_DATA): _DATA_CLOSED,
    # Resets end any live stream.
    **{(s, In.SEND_RST_STREAM): S.RESET for s in LIVE},
    **{(s, In.RECV_RST_STREAM): S.CLOSED for s in LIVE},
}

# The peer opens the stream with a request; our first HEADERS answer it.
SERVER: Transitions = {
    **_BOTH_ROLES,
    (S.IDLE, In.RECV_HEADERS): _OU,
    (_OU, In.SEND_HEADERS): _O,
    (_RU, In.SEND_HEADERS): _R,
    (_OU, In.RECV_HEADERS): _OU,  # trailers
    (_LU, In.RECV_HEADERS): _LU,
    (_OU, In.RECV_DATA): _OU,
    (_LU, In.RECV_DATA): _LU,
}

# We open the stream with a request; the peer's first final HEADERS answer it.
CLIENT: Transitions = {
    **_BOTH_ROLES,
    (S.IDLE, In.SEND_HEADERS): _OU,
    (_OU, In.RECV_HEADERS): _O,
    (_LU, In.RECV_HEADERS): _L,
    (_OU, In.RECV_DATA): Refusal(E.PROTOCOL_ERROR, "DATA before HEADERS"),
    (_LU, In.RECV_DATA): Refusal(E.PROTOCOL_ERROR, "DATA before HEADERS"),
}

# A frame on a stream id without a Stream (RFC 9113 section 5.1): an error,
# or None, ignored. A new request on an idle id is the connection's business.
# Frames after our RST_STREAM may have been in flight: ignored.
_CLOSED_IDS = (S.CLOSED, S.RESET, S.IMPLICITLY_CLOSED)
ON_UNKNOWN: dict[tuple[int, StreamState], Refusal | None] = {
    (f.DATA, S.IDLE): Refusal(E.PROTOCOL_ERROR, "DATA on an idle stream", True),
    (f.DATA, S.CLOSED): _DATA_CLOSED,
    (f.DATA, S.IMPLICITLY_CLOSED): _DATA_CLOSED,
    (f.DATA, S.RESET): None,
    (f.HEADERS, S.IDLE): Refusal(E.PROTOCOL_ERROR, "unexpected stream id {sid}", True),
    (f.HEADERS, S.CLOSED): Refusal(E.STREAM_CLOSED, "HEADERS on a closed stream", True),
    (f.HEADERS, S.IMPLICITLY_CLOSED): Refusal(E.PROTOCOL_ERROR, "unexpected stream id {sid}", True),
    (f.HEADERS, S.RESET): None,
    (f.WINDOW_UPDATE, S.IDLE): Refusal(E.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream", True),
    **{(f.WINDOW_UPDATE, s): None for s in _CLOSED_IDS},
    # On a closed stream, counted as a possible flood by the connection.
    (f.RST_STREAM, S.IDLE): Refusal(E.PROTOCOL_ERROR, "RST_STREAM on an idle stream", True),
    **{(f.RST_STREAM, s): None for s in _CLOSED_IDS},
}

# Which side sent END_STREAM, by state (the flags of old, which the relay still
# reads); an ended stream answers for the live state a reset ended
# (``closed_in``), or for CLOSED when END_STREAM went both ways.
_LOCAL_ENDED = (False, False, False, True, True, False, False, True, True, True)
_REMOTE_ENDED = (False, False, False, False, False, True, True, True, True, True)


class Stream(Window):
    """One stream. ``relay`` is the driver's; the core never reads it.
    ``send_window`` is what we may send; as a ``Window`` (flow.py), a stream
    holds what the peer may send on it."""

    __slots__ = (
        "id",
        "state",
        "closed_in",
        "send_window",
        "expected_length",
        "received_length",
        "relay",
    )

    def __init__(
        self, stream_id: int, send_window: int, recv_window: int, state: StreamState
    ) -> None:
        # Window.__init__, inlined: a call per stream costs more than three stores.
        self.recv_window = recv_window
        self.owed = 0
        self.credit_threshold = recv_window >> 2
        self.id = stream_id
        self.state = state
        self.closed_in = _CLOSED  # the live state a reset or a lost connection ended
        self.send_window = send_window
        self.expected_length: int | None = None  # content-length
        self.received_length = 0
        self.relay: object = None

    def end(self, state: StreamState) -> None:
        """Closed by a reset (``CLOSED``: the peer's, ``RESET``: ours) or a
        lost connection."""
        if self.state not in ENDED:
            self.closed_in = self.state
            self.state = state

    # Read by the relay, from before the state table.

    @property
    def closed(self) -> bool:
        return self.state in ENDED

    @closed.setter
    def closed(self, value: bool) -> None:
        """The relay's, when the connection is lost: only ``True``."""
        if not value:
            raise ValueError("a closed stream stays closed")
        self.end(_CLOSED)

    @property
    def local_closed(self) -> bool:
        """We sent END_STREAM (before any reset)."""
        state = self.state
        return _LOCAL_ENDED[self.closed_in if state in ENDED else state]

    @property
    def remote_closed(self) -> bool:
        """The peer sent END_STREAM (before any reset)."""
        state = self.state
        return _REMOTE_ENDED[self.closed_in if state in ENDED else state]

    def __repr__(self) -> str:
        return f"Stream({self.id}, {self.state.name})"


Moves = tuple["StreamState | None", ...]  # indexed by state; None: no such move


class Rows:
    """One role's table as tuples indexed by state, an input each: what the
    connection reads on its hot paths (an index where a dict lookup by a
    tuple key costs three times as much). Built from the table, never edited.
    ``opened``/``opened_ended``: a new stream's state after its first
    HEADERS, without and with END_STREAM."""

    __slots__ = (
        "send_headers",
        "send_data",
        "send_end",
        "recv_headers",
        "recv_trailers",
        "refuse_headers",
        "refuse_data",
        "recv_end",
        "opened",
        "opened_ended",
    )

    def __init__(self, table: Transitions, opener: StreamInput, closer: StreamInput) -> None:
        self.send_headers = _moves(table, In.SEND_HEADERS)
        self.send_data = _moves(table, In.SEND_DATA)
        self.send_end = _moves(table, In.SEND_END_STREAM)
        self.recv_end = _moves(table, In.RECV_END_STREAM)
        self.recv_headers = _moves(table, In.RECV_HEADERS)
        # The peer's HEADERS are trailers, except those that answer the stream.
        self.recv_trailers = tuple(
            not (s in UNANSWERED and m is not None and m not in UNANSWERED)
            for s, m in zip(S, self.recv_headers, strict=True)
        )
        # The refusals of what the peer sends, in rows apart from the moves
        # (DATA never moves a stream: it has a row of refusals only).
        self.refuse_headers = tuple(_refusal(table.get((s, In.RECV_HEADERS))) for s in S)
        self.refuse_data = tuple(_refusal(table.get((s, In.RECV_DATA))) for s in S)
        self.opened = _move(table, S.IDLE, opener)
        self.opened_ended = _move(table, self.opened, closer)


def _move(table: Transitions, state: StreamState, i: StreamInput) -> StreamState:
    move = table[state, i]
    if not isinstance(move, StreamState):
        raise TypeError(f"{i.name} in {state.name} is refused")
    return move


def _refusal(entry: StreamState | Refusal | None) -> Refusal | None:
    return entry if isinstance(entry, Refusal) else None


def _moves(table: Transitions, i: StreamInput) -> Moves:
    """The row of an input: the next states, None where refused or absent."""
    moves = [table.get((s, i)) for s in S]
    return tuple([m if isinstance(m, StreamState) else None for m in moves])


SERVER_ROWS = Rows(SERVER, In.RECV_HEADERS, In.RECV_END_STREAM)
CLIENT_ROWS = Rows(CLIENT, In.SEND_HEADERS, In.SEND_END_STREAM)
