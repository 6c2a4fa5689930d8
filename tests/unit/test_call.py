"""The call's own state machine (proxy/relay/call.py): the moves it allows, the
ones it refuses, and what a retry forgets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxy.balancing.endpoint import Endpoint
from proxy.balancing.pool import PoolSnapshot
from proxy.config.model import Address, Location
from proxy.http2.connection import Connection, Stream
from proxy.http2.stream import StreamState
from proxy.relay.call import (
    MAX_REFUSALS,
    REPLAY_LIMIT,
    CallState,
    CallStateError,
    RelayStream,
)
from proxy.relay.link import Link
from tests.unit.frame_factory import REQUEST

S = CallState
EP = Endpoint(Address("127.0.0.1", 1))


def _call() -> RelayStream:
    down = Link(Connection(client=False))
    pool = PoolSnapshot("u", (EP,), (), 1.0)
    stream = Stream(1, 65535, 65535, StreamState.OPEN_UNANSWERED)
    return RelayStream(down, stream, "/a.S/M", Location("/", False, "u"), pool, REQUEST, 0.0)


def _up() -> tuple[Link, Stream]:
    return Link(Connection(client=True)), Stream(1, 65535, 65535, StreamState.OPEN_UNANSWERED)


# Each move, by the method that makes it.
MOVES: dict[str, Callable[[RelayStream], None]] = {
    "connecting": lambda rs: rs.connecting(EP, 1.0),
    "queued": lambda rs: rs.queued(),
    "dequeued": lambda rs: rs.dequeued(),
    "streaming": lambda rs: rs.streaming(*_up()),
    "connect_failed": lambda rs: rs.connect_failed("x: refused"),
    "rewind_for_retry": lambda rs: rs.rewind_for_retry(),
    "end": lambda rs: rs.end(),
}
# (from, method) -> to: the call's whole transition table; every pair not
# listed must be refused.
ALLOWED = {
    (S.ROUTING, "connecting"): S.CONNECTING,
    (S.ROUTING, "queued"): S.QUEUED,
    (S.ROUTING, "end"): S.DONE,
    (S.QUEUED, "dequeued"): S.ROUTING,
    (S.QUEUED, "end"): S.DONE,
    (S.CONNECTING, "streaming"): S.STREAMING,
    (S.CONNECTING, "connect_failed"): S.ROUTING,
    (S.CONNECTING, "end"): S.DONE,
    (S.STREAMING, "rewind_for_retry"): S.ROUTING,
    (S.STREAMING, "end"): S.DONE,
}
# A way to reach each state from a new call.
PATHS = {
    S.ROUTING: [],
    S.QUEUED: ["queued"],
    S.CONNECTING: ["connecting"],
    S.STREAMING: ["connecting", "streaming"],
    S.DONE: ["end"],
}


@pytest.mark.parametrize("state", list(CallState))
@pytest.mark.parametrize("move", list(MOVES))
def test_moves_follow_the_table(state: CallState, move: str) -> None:
    rs = _call()
    for step in PATHS[state]:
        MOVES[step](rs)
    assert rs.state is state
    target = ALLOWED.get((state, move))
    if target is None:
        with pytest.raises(CallStateError):
            MOVES[move](rs)
        assert rs.state is state  # a refused move changes nothing
    else:
        MOVES[move](rs)
        assert rs.state is target
    assert rs.done is (rs.state is S.DONE)


def test_a_new_call_is_routing() -> None:
    rs = _call()
    assert rs.state is S.ROUTING and not rs.done and rs.status == -1


def test_connecting_records_the_attempt() -> None:
    rs = _call()
    rs.connecting(EP, 2.5)
    assert rs.tried == [EP] and rs.endpoint is EP and rs.dispatched_at == 2.5


def test_rewind_for_retry_forgets_the_refused_attempt() -> None:
    rs = _call()
    rs.connecting(EP, 1.0)
    link, up = _up()
    rs.streaming(link, up)
    link.blocked[rs] = None
    rs.request.blocked_since = 3.0
    rs.request.end_sent = True
    rs.rewind_for_retry()
    assert rs.state is S.ROUTING
    assert rs.up is None and rs.up_link is None and rs not in link.blocked
    assert rs.request.blocked_since is None and not rs.request.end_sent
    assert rs.tried == [] and rs.refusals == 1 and rs.last_error == "stream refused"
    assert rs.endpoint is EP  # for the relay to release


def test_retryable_until_the_response_starts_or_refusals_run_out() -> None:
    rs = _call()
    assert rs.retryable()
    rs.refusals = MAX_REFUSALS
    assert not rs.retryable()
    rs.refusals = 0
    rs.response_started = True
    assert not rs.retryable()


def test_replay_keeps_what_went_upstream_and_puts_it_back_first() -> None:
    rs = _call()
    rs.keep_for_replay(b"ab")
    rs.keep_for_replay(memoryview(b"cd"))
    rs.request.chunks.append((b"ef", True))
    rs.request.size = 2
    rs.take_replay()
    assert list(rs.request.chunks) == [(b"ab", False), (b"cd", False), (b"ef", True)]
    assert rs.request.size == 6 and rs.replay == [] and rs.replay_size == 0


def test_too_much_to_replay_is_not_retried() -> None:
    rs = _call()
    rs.keep_for_replay(b"x" * (REPLAY_LIMIT + 1))
    assert rs.replay is None and not rs.retryable()
