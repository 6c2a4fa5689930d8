"""One HTTP/2 connection's I/O: a reader task feeding the core, and one writer
task that flushes the core's pending bytes in one ``send_all`` per batch.

Write-through (plain TCP sockets): while the writer is parked holding
nothing, the end of a batch writes the batch itself, in one ``os.write`` that
never yields, instead of waking the writer for it. Waking it costs a task
step, a scheduler pass and two system calls: a sixth of the CPU of a call
served one at a time (benchmarks/README.md). Whatever the socket does not
take at once goes to the writer, which owns the socket from then until it
parks again. So at any moment one party alone may write, and bytes stay in
order: nothing is written through while the writer holds bytes, is writing,
or has been woken.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import trio

from proxy.http2.events import Event
from proxy.relay.link import Link
from proxy.relay.relay import Relay

log = logging.getLogger("grpc_proxy.io")

READ_SIZE = 256 << 10
FINAL_FLUSH_TIMEOUT = 2.0


class LinkIO:
    """Drives ``link`` over ``stream`` until either side closes."""

    def __init__(
        self,
        link: Link,
        stream: trio.abc.Stream,
        relay: Relay,
        on_events: Callable[[Link, list[Event]], None],
    ) -> None:
        self.link = link
        self.stream = stream
        self.relay = relay
        self.on_events = on_events
        # The writer parks here when the core has nothing to send; waking an
        # empty lot is a no-op, so the relay may wake links freely.
        self._lot = trio.lowlevel.ParkingLot()
        self._closing = False
        self._writer_done = trio.Event()
        self._scope: trio.CancelScope | None = None
        self._reader_scope: trio.CancelScope | None = None
        self.close_reason = ""
        self.rx = 0  # receive batches: the keepalive timers' sign of life
        # Called when a PING ACK arrived (the keepalive timers wait for it).
        self.on_ping_ack: Callable[[], None] | None = None
        # Plain TCP sockets are read and written by fd (see _receive_fd); other
        # streams (TLS) go through trio's Stream interface.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._drained = False  # the last read was short (_receive_fd)
        # The writer is parked with nothing held: the socket is free for a
        # write-through (_push). Cleared by whoever wakes it, and when it wakes.
        self._parked = False
        # What a write-through could not write at once: the writer's, first.
        self._held: memoryview | None = None
        self._wake = link.wake = self._push if self._fd >= 0 else self._wake_writer

    async def run(self, first: Callable[[], None] | None = None) -> None:
        """Serve until EOF, an error, or a connection error found by the core."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._writer, nursery.cancel_scope)
                if first is not None:
                    first()
                with trio.CancelScope() as self._reader_scope:
                    await self._reader()
                # Let the writer flush what is left (a GOAWAY, final frames).
                self._closing = True
                self._wake_writer()
                with trio.move_on_after(FINAL_FLUSH_TIMEOUT):
                    await self._writer_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    def shutdown(self, reason: str) -> None:
        """Stop reading, flush what is queued (a GOAWAY, trailers), then close."""
        self.close_reason = self.close_reason or reason
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    def abort(self, reason: str) -> None:
        """Close at once, without flushing."""
        self.close_reason = reason
        if self._scope is not None:
            self._scope.cancel()

    def _wake_writer(self) -> None:
        self._parked = False
        self._lot.unpark_all()

    def _push(self) -> None:
        """``link.wake`` for a plain socket: the core has output at the end of
        a batch. Write it through if the socket is free, else wake the writer.
        Links with blocked streams go through the writer, whose pass after a
        write resumes them (Relay.drained) one batch at a time."""
        if not self._parked or self.link.blocked:
            self._wake_writer()
            return
        data = self.link.core.take_output()
        try:
            n = os.write(self._fd, data)
        except OSError:  # full (EAGAIN), or broken: the writer meets the error and closes
            n = 0
        if n < len(data):
            self._held = memoryview(data)[n:]
            self._wake_writer()

    async def _receive_fd(self) -> bytes:
        """``receive_some`` for a plain socket with one scheduler pass per wait
        instead of trio's two (it checkpoints again after a successful read).
        After a short read the socket is drained: wait before reading again,
        rather than spend a read() on EAGAIN."""
        fd = self._fd
        if self._drained:
            await trio.lowlevel.wait_readable(fd)
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            if len(data) < READ_SIZE:
                self._drained = True
            else:  # data kept coming: stay fair to other tasks
                self._drained = False
                await trio.lowlevel.checkpoint()
            return data

    async def _receive_stream(self) -> bytes:
        return bytes(await self.stream.receive_some(READ_SIZE))

    async def _send_fd(self, data: bytes | memoryview) -> None:
        fd = self._fd
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
                continue
            view = view[n:]

    async def _reader(self) -> None:
        core = self.link.core
        relay = self.relay
        on_events = self.on_events
        receive = self._receive_fd if self._fd >= 0 else self._receive_stream
        acks = core.ping_acks
        while True:
            try:
                data = await receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self.close_reason = f"read error: {e}"
                return
            if not data:
                self.close_reason = "closed by peer"
                return
            self.rx += 1
            events = core.receive_data(data)
            if events:
                on_events(self.link, events)
                if core.ping_acks != acks:
                    acks = core.ping_acks
                    if self.on_ping_ack is not None:
                        self.on_ping_ack()
            relay.flush()
            if core.out:  # output that no event marked (SETTINGS and PING ACKs)
                self._wake()
            if core.closed:
                self.close_reason = core.close_reason or "closed"
                return

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        core = self.link.core
        relay = self.relay
        send_all = self._send_fd if self._fd >= 0 else self.stream.send_all
        try:
            while True:
                if not core.out and self._held is None and not self._closing:
                    self._parked = True
                    try:
                        await self._lot.park()
                    finally:
                        self._parked = False
                elif core.out:
                    await trio.lowlevel.checkpoint()  # looping without parking: be fair
                if self._held is not None or core.out:
                    # A write-through's remainder goes before anything newer.
                    held, self._held = self._held, None
                    try:
                        await send_all(core.take_output() if held is None else held)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                        self.close_reason = self.close_reason or f"write error: {e}"
                        cancel_scope.cancel()
                        return
                    relay.drained(self.link)
                    relay.flush()
                if self._closing and not core.out:
                    return
        finally:
            self._writer_done.set()
