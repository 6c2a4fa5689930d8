"""LinkIO's write-through over a real TCP connection on 127.0.0.1: the end of
a batch writes the socket itself while the writer is parked with nothing held,
and hands the writer whatever the socket did not take, in order."""

from __future__ import annotations

import os
import socket
import struct

import trio
import trio.testing

from proxy.http2.connection import Connection
from proxy.relay.link import Link
from proxy.relay.relay import Relay
from proxy.runtime.io import LinkIO


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    theirs = await trio.open_tcp_stream("127.0.0.1", port)
    ours = await listener.accept()
    await listener.aclose()
    assert isinstance(ours, trio.SocketStream)
    return ours, theirs


def _link_io(ours: trio.SocketStream) -> tuple[LinkIO, Relay, Link]:
    relay = Relay({}, trio.current_time)
    link = Link(Connection(client=False), peer="test")
    link.core.take_output()  # our SETTINGS: not what these tests look at
    return LinkIO(link, ours, relay, relay.on_client_events), relay, link


def _end_batch(relay: Relay, link: Link, data: bytes) -> None:
    """What the relay does: the core gets output, the batch ends."""
    link.core.out.append(data)
    link.core.out_size += len(data)
    relay.dirty.add(link)
    relay.flush()


def test_a_batch_is_on_the_wire_before_any_task_runs() -> None:
    async def main() -> None:
        ours, theirs = await _tcp_pair()
        io, relay, link = _link_io(ours)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(io.run)
            await trio.testing.wait_all_tasks_blocked()  # the writer is parked
            _end_batch(relay, link, b"one batch")
            # No checkpoint since: the writer cannot have run, the bytes are sent.
            assert os.read(theirs.socket.fileno(), 100) == b"one batch"
            await theirs.aclose()
        assert io.close_reason == "closed by peer"

    trio.run(main)


def test_bytes_stay_in_order_when_the_socket_takes_only_part_of_a_batch() -> None:
    # A reader slower than the writer: write-throughs are cut short, the writer
    # holds the rest while newer batches queue behind it.
    sizes = [1 + (i * 7919) % 60000 for i in range(120)]
    chunks = [struct.pack(">I", i) * (n // 4 + 1) for i, n in enumerate(sizes)]
    expected = b"".join(chunks)

    async def main() -> None:
        ours, theirs = await _tcp_pair()
        theirs.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        ours.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        io, relay, link = _link_io(ours)
        received = bytearray()
        cut_short = 0

        async def read_slowly() -> None:
            while len(received) < len(expected):
                received.extend(await theirs.receive_some(8192))
                await trio.sleep(0.0005)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(io.run)
                nursery.start_soon(read_slowly)
                await trio.testing.wait_all_tasks_blocked()
                for i, chunk in enumerate(chunks):
                    _end_batch(relay, link, chunk)
                    cut_short += io._held is not None
                    if i % 3 == 0:
                        await trio.sleep(0.001)
                while len(received) < len(expected):
                    await trio.sleep(0.01)
                await theirs.aclose()
        assert cut_short > 0, "no write-through was cut short: the test tested nothing"
        assert bytes(received) == expected

    trio.run(main)


def test_a_write_through_to_a_reset_peer_closes_that_connection_only() -> None:
    async def main() -> None:
        ours, theirs = await _tcp_pair()
        io, relay, link = _link_io(ours)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(io.run)
                await trio.testing.wait_all_tasks_blocked()
                # Close with RST: the next write fails (ECONNRESET or EPIPE).
                theirs.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                theirs.socket.close()
                _end_batch(relay, link, b"x" * 1000)  # raises nothing here
                # The failed write-through is handed to the writer, not lost.
                assert io._held is not None and len(io._held) == 1000
                # The writer or the reader meets the error; the connection closes.
        assert io.close_reason.startswith(("write error", "read error", "closed by peer"))

    trio.run(main)
