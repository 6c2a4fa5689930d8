"""A gRPC backend built on h2 whose connection preface is scripted, to reproduce
what other gRPC stacks send when a connection opens (grpc-js and grpc-go: a
lone SETTINGS; grpcio: SETTINGS and a WINDOW_UPDATE) and in what order.

It answers every call with one message (the request's, echoed) and
``grpc-status: 0``. Threads only; every wait has a timeout; ``close()`` stops it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.events

# Scripts: what the server sends as soon as it accepts (before reading anything),
# and what it sends on reading the client's preface.
PREFACES: dict[str, tuple[Sequence[str], Sequence[str]]] = {
    "settings-alone": ((), ("settings",)),  # grpc-js, grpc-go
    "settings-first": (("settings",), ()),  # before the client speaks
    "settings+window": ((), ("settings", "window")),  # grpcio
    "settings-then-ack-later": ((), ("settings", "pause")),  # ACK of ours comes late
}


class ScriptedBackend:
    def __init__(self, script: str, host: str = "127.0.0.1") -> None:
        self.on_accept, self.on_preface = PREFACES[script]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.calls = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _send_script(
        self, c: h2.connection.H2Connection, sock: socket.socket, steps: Sequence[str]
    ) -> None:
        for step in steps:
            if step == "settings":
                c.initiate_connection()  # h2 sends SETTINGS only
            elif step == "window":
                c.increment_flow_control_window(1 << 20)
            elif step == "pause":
                sock.sendall(c.data_to_send())
                self._stop.wait(0.3)
        sock.sendall(c.data_to_send())

    def _serve(self, sock: socket.socket) -> None:
        c = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        sock.settimeout(0.2)
        bodies: dict[int, bytes] = {}
        preface_seen = False
        try:
            self._send_script(c, sock, self.on_accept)
            while not self._stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                events = c.receive_data(data)
                if not preface_seen:
                    preface_seen = True
                    self._send_script(c, sock, self.on_preface)
                for ev in events:
                    if isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self.calls += 1
                        sid = ev.stream_id
                        c.send_headers(
                            sid, [(b":status", b"200"), (b"content-type", b"application/grpc")]
                        )
                        c.send_data(sid, bodies.pop(sid, b""))
                        c.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
                sock.sendall(c.data_to_send())
        except OSError:
            return
        finally:
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(timeout=2.0)
