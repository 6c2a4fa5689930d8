"""A response the proxy writes itself, with a body: what a non-gRPC request
(a browser, curl, an HTTP/2 conformance suite) gets instead of a gRPC status.

The body is short text, but it still goes through the client's flow-control
windows like any DATA: a client that advertised a window of 1 byte gets one
byte, and the rest when it sends WINDOW_UPDATE.
"""

from __future__ import annotations

from typing import final

from proxy.http2.connection import Stream


@final
class Reply:
    __slots__ = ("stream", "body")

    def __init__(self, stream: Stream, body: bytes) -> None:
        self.stream = stream
        self.body = memoryview(body)  # what is left to send

    def take(self, window: int) -> tuple[memoryview, bool]:
        """The next chunk within ``window`` and whether it is the last."""
        chunk, self.body = self.body[:window], self.body[window:]
        return chunk, not self.body
