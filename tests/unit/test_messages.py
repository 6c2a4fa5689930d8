"""The gRPC message counter: any run of length-prefixed messages, split
into DATA payloads anywhere, counts each message exactly once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.relay.messages import MessageCount


def frame(size: int, flag: int = 0) -> bytes:
    return bytes([flag]) + size.to_bytes(4, "big") + b"m" * size


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


sizes = st.lists(st.integers(0, 300) | st.sampled_from([0, 1, 4, 5, 6, 16384]), max_size=30)
cuts = st.lists(st.integers(0, 1 << 20), max_size=40)


@settings(max_examples=400, deadline=None)
@given(sizes, cuts, st.booleans())
def test_any_split_counts_every_message_once(
    sizes: list[int], cuts: list[int], views: bool
) -> None:
    body = b"".join(frame(n, flag=n & 1) for n in sizes)
    mc = MessageCount()
    for chunk in split(body, cuts):
        mc.feed(memoryview(chunk) if views else chunk)
    assert mc.messages == len(sizes)
    assert mc.bytes == len(body)
    assert mc.skip == 0 and mc.head == b""


@settings(max_examples=200, deadline=None)
@given(sizes, cuts, st.integers(0, 1 << 20))
def test_a_cut_stream_counts_the_messages_whose_prefix_arrived(
    sizes: list[int], cuts: list[int], stop: int
) -> None:
    body = b"".join(frame(n) for n in sizes)
    stop %= len(body) + 1
    mc = MessageCount()
    for chunk in split(body[:stop], cuts):
        mc.feed(chunk)
    starts, pos = [], 0
    for n in sizes:
        starts.append(pos)
        pos += 5 + n
    assert mc.messages == sum(1 for s in starts if s + 5 <= stop)


def test_byte_at_a_time() -> None:
    body = frame(3) + frame(0) + frame(70000)
    mc = MessageCount()
    for i in range(len(body)):
        mc.feed(body[i : i + 1])
    assert (mc.messages, mc.bytes) == (3, len(body))


def test_empty_data_changes_nothing() -> None:
    mc = MessageCount()
    mc.feed(b"")
    mc.feed(frame(2)[:3])
    mc.feed(b"")
    mc.feed(frame(2)[3:])
    assert (mc.messages, mc.skip, mc.head) == (1, 0, b"")
