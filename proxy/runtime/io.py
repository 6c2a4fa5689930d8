"""One HTTP/2 connection's I/O: a reader task feeding the core, and one writer
task that flushes the core's pending bytes in one ``send_all`` per batch."""

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
        link.wake = self._lot.unpark_all
        # Plain TCP sockets are read and written by fd (see _receive_fd); other
        # streams (TLS) go through trio's Stream interface.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._drained = False  # the last read was short (_receive_fd)

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
                self._lot.unpark_all()
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

    async def _send_fd(self, data: bytes) -> None:
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
            if core.out:
                self._lot.unpark_all()
            if core.closed:
                self.close_reason = core.close_reason or "closed"
                return

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        core = self.link.core
        relay = self.relay
        send_all = self._send_fd if self._fd >= 0 else self.stream.send_all
        try:
            while True:
                if not core.out and not self._closing:
                    await self._lot.park()
                elif core.out:
                    await trio.lowlevel.checkpoint()  # looping without parking: be fair
                if core.out:
                    try:
                        await send_all(core.take_output())
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
