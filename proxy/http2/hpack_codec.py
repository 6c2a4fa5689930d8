"""Header block coding: hpack decoding with a cache, stateless cached encoding.

Decoding: a block that leaves the dynamic table unchanged decodes the same way
for as long as the table stays unchanged, so such blocks are cached by their
bytes; any block that changes the table clears the cache. gRPC clients repeat
the same blocks call after call, so most decodes become a dict lookup.

Encoding: literals without indexing (never-indexed kept as such, RFC 7541
section 6.2.3) and no Huffman. The peer's dynamic table is never touched, so
encoded blocks can be cached by their header list on every connection alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import hpack
from hpack.hpack import encode_integer
from hpack.struct import NeverIndexedHeaderTuple
from hpack.table import HeaderTable

Header = tuple[bytes, bytes]
# What the core takes and gives: a list the relay built, or a decoded HeaderBlock.
HeaderList = Sequence[Header]
HeaderCheck = Callable[[HeaderList], "str | None"]


class HeaderBlock(tuple[Header, ...]):
    """A decoded header list, immutable. The decode cache hands the same
    object back for the same bytes, so what is derived from it is computed
    once per distinct block, not once per call, and kept with it: the RFC
    9113 check (``check``), the content-length, the re-encoding, and
    ``info``, the relay's summary of a request, which the relay sets once
    (a second assignment, or any other, raises AttributeError).

    A tuple subclass cannot have ``__slots__``: the derived values live in
    the instance ``__dict__``, written only here (``cached_property`` and
    ``check``), never through attribute assignment. It compares equal to a
    list with the same headers, as the list it replaces did."""

    info: object = None  # the relay's, write-once
    _checked: HeaderCheck | None = None  # which check produced _error
    _error: str | None = None

    def __setattr__(self, name: str, value: object) -> None:
        if name != "info" or "info" in self.__dict__:
            raise AttributeError(f"HeaderBlock is immutable: cannot set {name}")
        self.__dict__["info"] = value

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"HeaderBlock is immutable: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    def check(self, check: HeaderCheck) -> str | None:
        """``check(self)`` (an error message or None), remembered for the
        last check applied: a block is checked as what it is (a request, a
        response, trailers) once."""
        if self._checked is not check:
            d = self.__dict__
            d["_error"] = check(self)
            d["_checked"] = check
        return self._error

    @cached_property
    def content_length(self) -> int | None:
        """The content-length value (-1 if malformed), or None."""
        for name, value in self:
            if name == b"content-length":
                return int(value) if value.isdigit() else -1
        return None

    @cached_property
    def encoded(self) -> bytes:
        """The block re-encoded as ``encode_headers`` does any list."""
        return _encode(self)


_CACHE_LIMIT = 512

_STATIC_FULL: dict[Header, int] = {}
_STATIC_NAME: dict[bytes, int] = {}
for _i, (_n, _v) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _STATIC_FULL.setdefault((_n, _v), _i)
    _STATIC_NAME.setdefault(_n, _i)

# A dynamic table size update to 0, sent first on each connection: our table is
# then empty by declaration, whatever the peer's SETTINGS_HEADER_TABLE_SIZE says.
TABLE_SIZE_ZERO = b"\x20"


class HeaderDecodeError(Exception):
    """The block is not valid HPACK: a COMPRESSION_ERROR for the connection."""


class HeaderListTooLarge(Exception):
    """The decoded list exceeds our SETTINGS_MAX_HEADER_LIST_SIZE."""


class HeaderDecoder:
    """``decode(block)`` is ``cache.get(block)`` when that is not None: the
    connection reads the cache itself first, a call less per block."""

    __slots__ = ("_decoder", "cache", "_marker")

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = max_header_list_size
        self.cache: dict[bytes, HeaderBlock] = {}
        self._marker = self._table_marker()

    def _table_marker(self) -> tuple[object, int, int]:
        table = self._decoder.header_table
        entries = table.dynamic_entries
        return (entries[0] if entries else None, len(entries), table.maxsize)

    def decode(self, block: bytes) -> HeaderBlock:
        cached = self.cache.get(block)
        if cached is not None:
            return cached
        try:
            decoded = self._decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as e:
            raise HeaderListTooLarge(str(e)) from None
        except (hpack.HPACKError, IndexError, ValueError, TypeError) as e:
            raise HeaderDecodeError(str(e) or type(e).__name__) from None
        headers = HeaderBlock(
            NeverIndexedHeaderTuple(n, v) if isinstance(h, NeverIndexedHeaderTuple) else (n, v)
            for h in decoded
            for n, v in (h,)
        )
        marker = self._table_marker()
        if marker[0] is self._marker[0] and marker[1:] == self._marker[1:]:
            if len(self.cache) >= _CACHE_LIMIT:
                self.cache.clear()
            self.cache[block] = headers
        else:
            self.cache.clear()
            self._marker = marker
        return headers


def _string(data: bytes) -> bytes:
    return bytes(encode_integer(len(data), 7)) + data


def _encode(headers: HeaderList) -> bytes:
    out = bytearray()
    for h in headers:
        name, value = h
        if isinstance(h, NeverIndexedHeaderTuple):
            prefix = 0x10
        else:
            idx = _STATIC_FULL.get((name, value))
            if idx is not None:
                enc = encode_integer(idx, 7)
                enc[0] |= 0x80
                out += enc
                continue
            prefix = 0x00
        idx = _STATIC_NAME.get(name)
        if idx is not None:
            enc = encode_integer(idx, 4)
            enc[0] |= prefix
            out += enc
        else:
            out.append(prefix)
            out += _string(name)
        out += _string(value)
    return bytes(out)


_encode_cache: dict[tuple[Header, ...], bytes] = {}


def encode_headers(headers: HeaderList) -> bytes:
    if type(headers) is HeaderBlock:
        return headers.encoded
    key = tuple(headers)
    block = _encode_cache.get(key)
    if block is None:
        block = _encode(key)
        if len(_encode_cache) >= _CACHE_LIMIT:
            _encode_cache.clear()
        _encode_cache[key] = block
    return block
