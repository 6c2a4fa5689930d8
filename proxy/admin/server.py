"""The admin listener: HTTP/1.1 with h11 on trio, keep-alive, one request at
a time per connection.

A bad admin client cannot hurt the proxy: the request head is bounded
(``MAX_HEAD``), a body is refused above ``MAX_BODY``, every request must
arrive within ``REQUEST_TIMEOUT`` (idle keep-alive included), and at most
``MAX_CONNECTIONS`` admin connections are served at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

import h11
import trio

from proxy.admin.handlers import TEXT, AdminHandlers, Response

log = logging.getLogger("grpc_proxy.admin")

MAX_HEAD = 16 << 10
MAX_BODY = 64 << 10
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 32
READ_SIZE = 16 << 10


class AdminServer:
    """``before_metrics`` runs on the trio thread before /metrics and the
    status page are rendered (it moves the latest counts into the metrics)."""

    def __init__(
        self, handlers: AdminHandlers, before_metrics: Callable[[], None] | None = None
    ) -> None:
        self.handlers = handlers
        self.before_metrics = before_metrics
        self.connections = 0

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        await trio.serve_listeners(self.handle_connection, listeners)

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        if self.connections >= MAX_CONNECTIONS:
            await trio.aclose_forcefully(stream)
            return
        self.connections += 1
        try:
            await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the admin client went away
        except Exception:  # one admin client's trouble must never reach the listener
            log.exception("admin connection failed")
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        while True:
            with trio.move_on_after(REQUEST_TIMEOUT) as timer:
                request, error = await _read_request(conn, stream)
            if timer.cancelled_caught:
                if conn.their_state is h11.SEND_BODY or conn.our_state is h11.SEND_RESPONSE:
                    await self._send(conn, stream, _error(408, "request timeout"))
                return
            if request is None:
                if error is not None and conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, stream, error)
                return
            response = await self._respond(request)
            await self._send(conn, stream, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _respond(self, request: h11.Request) -> Response:
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        response = self.handlers.route(method, target)
        if response is not None:
            return response
        if self.before_metrics is not None:
            self.before_metrics()
        # Rendering reads and formats every series (and, with several
        # workers, their files): off the trio thread so calls keep moving.
        return await trio.to_thread.run_sync(self.handlers.prepare(target))

    async def _send(
        self, conn: h11.Connection, stream: trio.abc.Stream, response: Response
    ) -> None:
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        try:
            data = conn.send(
                h11.Response(
                    status_code=response.status,
                    headers=headers,
                    reason=reason_phrase(response.status),
                )
            )
            data += conn.send(h11.Data(data=response.body))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        with trio.move_on_after(REQUEST_TIMEOUT):
            await stream.send_all(data)


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase ("Not Found"); h11 sends none unless given."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _error(status: int, text: str) -> Response:
    return Response(status, TEXT, (text + "\n").encode(), (("Connection", "close"),))


async def _read_request(
    conn: h11.Connection, stream: trio.abc.Stream
) -> tuple[h11.Request | None, Response | None]:
    """The next whole request (its body read and dropped), or (None, an
    error response to send or None when the client just left)."""
    request: h11.Request | None = None
    body = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            return None, _error(e.error_status_hint, "bad request")
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                return None, _error(417, "expectation failed")
            data = await stream.receive_some(READ_SIZE)
            conn.receive_data(bytes(data))  # b"" is EOF
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += len(event.data)
            if body > MAX_BODY:
                return None, _error(413, "request body too large")
        elif isinstance(event, h11.EndOfMessage):
            return request, None
        elif isinstance(event, h11.ConnectionClosed):
            return None, None
        else:
            return None, None
