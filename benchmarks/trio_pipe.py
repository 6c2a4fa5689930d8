"""A byte pipe in trio with grpc-proxy's I/O structure and no HTTP/2 (not a proxy).

    .venv/bin/python benchmarks/trio_pipe.py --port 8080 --backends 127.0.0.1:50051,...

Each accepted connection gets its own connection to the next backend (round
robin), and bytes are copied both ways exactly as grpc-proxy's I/O layer
(proxy/runtime/io.py) moves them: per connection a reader task (``os.read``,
waiting on the fd only after a short read) and a writer task parked on a
ParkingLot until the other side's reader queues bytes, which it writes with
``os.write``. No frame is parsed, no call is routed: its CPU per call is what
trio's scheduler and the system calls cost with this task structure, the floor
under grpc-proxy's figure (``run.py --proxies ...,trio-pipe``).

``--write-through``: the reader writes to the other socket itself while that
side's writer has nothing queued (the writer task only takes what a short
write left): one task step and one scheduler pass fewer per hop. grpc-proxy
does this since session 8 (``LinkIO._push``), so ``trio-pipe-wt`` is the
floor under today's grpc-proxy and ``trio-pipe`` the floor it had before.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Iterator

import trio

READ_SIZE = 256 << 10


class Side:
    """One socket: its fd, and the bytes queued for it by the other side's reader."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.fd = stream.socket.fileno()
        self.out: list[bytes] = []
        self.lot = trio.lowlevel.ParkingLot()
        self.drained = False  # the last read was short: wait before reading again
        self.writing = False  # the writer holds bytes the socket has not taken yet


async def _read(side: Side) -> bytes:
    """LinkIO._receive_fd."""
    if side.drained:
        await trio.lowlevel.wait_readable(side.fd)
    while True:
        try:
            data = os.read(side.fd, READ_SIZE)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(side.fd)
            continue
        side.drained = len(data) < READ_SIZE
        if not side.drained:
            await trio.lowlevel.checkpoint()
        return data


async def _write_all(fd: int, data: bytes) -> None:
    """LinkIO._send_fd."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)
            continue
        view = view[n:]


def _write_through(dst: Side, data: bytes) -> None:
    """Write now if nothing is queued for dst or held by its writer; queue what
    the socket did not take."""
    if not dst.out and not dst.writing:
        try:
            n = os.write(dst.fd, data)
        except BlockingIOError:
            n = 0
        data = data[n:]
    if data:
        dst.out.append(data)
        dst.lot.unpark_all()


async def _reader(src: Side, dst: Side, write_through: bool) -> None:
    while True:
        try:
            data = await _read(src)
        except OSError:
            return
        if not data:
            return
        if write_through:
            try:
                _write_through(dst, data)
            except OSError:  # the other side closed
                return
        else:
            dst.out.append(data)
            dst.lot.unpark_all()


async def _writer(side: Side) -> None:
    """LinkIO._writer: one ``os.write`` loop per batch of queued bytes."""
    while True:
        if not side.out:
            await side.lot.park()
        data = b"".join(side.out)
        side.out.clear()
        side.writing = True
        try:
            await _write_all(side.fd, data)
        except OSError:
            return
        side.writing = False


async def _pipe(
    client: trio.SocketStream, backends: Iterator[tuple[str, int]], write_through: bool
) -> None:
    host, port = next(backends)
    try:
        upstream = await trio.open_tcp_stream(host, port)
    except OSError:
        await client.aclose()
        return
    async with client, upstream:
        down, up = Side(client), Side(upstream)
        async with trio.open_nursery() as nursery:

            async def one_way(src: Side, dst: Side) -> None:
                await _reader(src, dst, write_through)
                nursery.cancel_scope.cancel()  # either side closed: close both

            nursery.start_soon(_writer, down)
            nursery.start_soon(_writer, up)
            nursery.start_soon(one_way, down, up)
            nursery.start_soon(one_way, up, down)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    p.add_argument("--backends", required=True, help="comma-separated HOST:PORT list")
    p.add_argument("--write-through", action="store_true")
    args = p.parse_args(argv)
    backends = itertools.cycle([_address(b) for b in args.backends.split(",") if b])

    async def serve() -> None:
        await trio.serve_tcp(
            lambda stream: _pipe(stream, backends, args.write_through), args.port, host="127.0.0.1"
        )

    try:
        trio.run(serve)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
