"""``grpc-proxy register --health``'s check (proxy/discovery/health_probe.py)
against an h2 server on 127.0.0.1: SERVING passes; anything else, a silent
server and a closed port give the reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import h2.config
import h2.connection
import h2.events
import pytest
import trio

from proxy.discovery import health_probe

Answer = Callable[[h2.connection.H2Connection, int], None]


def _serving(status: int) -> Answer:
    def answer(conn: h2.connection.H2Connection, sid: int) -> None:
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        msg = b"\x08" + bytes([status])  # HealthCheckResponse{status}
        conn.send_data(sid, b"\x00" + len(msg).to_bytes(4, "big") + msg)
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)

    return answer


def _unimplemented(conn: h2.connection.H2Connection, sid: int) -> None:
    conn.send_headers(
        sid,
        [
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "12"),
            ("grpc-message", "no health"),
        ],
        end_stream=True,
    )


def _silent(conn: h2.connection.H2Connection, sid: int) -> None:
    pass


async def _serve(answer: Answer, paths: list[str], stream: trio.SocketStream) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    async with stream:
        await stream.send_all(conn.data_to_send())
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    paths.append(dict(ev.headers)[b":path"].decode())
                elif isinstance(ev, h2.events.StreamEnded):
                    answer(conn, ev.stream_id)
            await stream.send_all(conn.data_to_send())


def _with_server(answer: Answer, test: Callable[[str, list[str]], Awaitable[None]]) -> None:
    async def main() -> None:
        paths: list[str] = []
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, partial(_serve, answer, paths), 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            await test(f"127.0.0.1:{port}", paths)
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (_serving(1), ""),
        (_serving(2), "NOT_SERVING"),
        (_unimplemented, "grpc-status 12: no health"),
        (_silent, "no answer in 0.5s"),
    ],
)
def test_check(answer: Answer, reason: str) -> None:
    async def test(target: str, paths: list[str]) -> None:
        assert await health_probe.check(target, 0.5) == reason
        assert paths == ["/grpc.health.v1.Health/Check"]

    _with_server(answer, test)


def test_a_closed_port_is_a_reason() -> None:
    async def main() -> str:
        with trio.socket.socket() as s:
            await s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: refused
            return await health_probe.check(f"127.0.0.1:{port}", 2.0)

    assert trio.run(main).startswith("cannot connect")
