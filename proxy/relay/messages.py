"""Counting gRPC messages in one direction of a call without decoding them.

A gRPC body is a run of length-prefixed messages: 1 flag byte, a 4-byte
big-endian length, then the payload. DATA frames split that run anywhere, so
the counter keeps how many payload bytes it still has to skip and any partial
5-byte prefix. A message counts once its prefix is complete.
"""

from __future__ import annotations

from struct import Struct

_LENGTH = Struct(">I")
PREFIX = 5


class MessageCount:
    """Bytes and messages seen in one direction (``feed`` every DATA payload)."""

    __slots__ = ("bytes", "messages", "skip", "head")

    def __init__(self) -> None:
        self.bytes = 0
        self.messages = 0
        self.skip = 0  # payload bytes of the current message still to come
        self.head = b""  # a prefix split across DATA frames (fewer than 5 bytes)

    def feed(self, data: bytes | memoryview) -> None:
        n = len(data)
        self.bytes += n
        skip = self.skip
        if skip >= n:  # inside one message: the common case of big messages
            self.skip = skip - n
            return
        pos = skip
        count = 0
        head = self.head
        if head:  # pos is 0 here: a prefix only starts once a payload is skipped
            need = PREFIX - len(head)
            if n < need:
                self.head = head + bytes(data)
                return
            head += bytes(data[:need])
            self.head = b""
            count = 1
            pos = need + _LENGTH.unpack_from(head, 1)[0]
        unpack = _LENGTH.unpack_from
        while pos + PREFIX <= n:
            count += 1
            pos += PREFIX + unpack(data, pos + 1)[0]
        if pos < n:
            self.head = bytes(data[pos:])
            self.skip = 0
        else:
            self.skip = pos - n
        self.messages += count
