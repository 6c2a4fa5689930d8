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

import hpack
from hpack.hpack import encode_integer
from hpack.struct import NeverIndexedHeaderTuple
from hpack.table import HeaderTable

Header = tuple[bytes, bytes]
HeaderList = list[Header]


class HeaderBlock(list):  # type: ignore[type-arg]
    """A decoded header list that remembers work done on it. Cached blocks
    come back as the same object, so checks, field scans and the re-encoding
    are done once per distinct block, not once per call."""

    __slots__ = ("checked", "error", "encoded", "info", "length")

    def __init__(self, headers: HeaderList) -> None:
        super().__init__(headers)
        self.checked: object = None  # which check produced ``error``
        self.error: str | None = None
        self.encoded: bytes | None = None
        self.info: object = None
        self.length: int | None | bool = False  # content-length; False: not read yet

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
    __slots__ = ("_decoder", "_cache", "_marker")

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = max_header_list_size
        self._cache: dict[bytes, HeaderBlock] = {}
        self._marker = self._table_marker()

    def _table_marker(self) -> tuple[object, int, int]:
        table = self._decoder.header_table
        entries = table.dynamic_entries
        return (entries[0] if entries else None, len(entries), table.maxsize)

    def decode(self, block: bytes) -> HeaderBlock:
        cached = self._cache.get(block)
        if cached is not None:
            return cached
        try:
            decoded = self._decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as e:
            raise HeaderListTooLarge(str(e)) from None
        except (hpack.HPACKError, IndexError, ValueError, TypeError) as e:
            raise HeaderDecodeError(str(e) or type(e).__name__) from None
        headers = HeaderBlock(
            [NeverIndexedHeaderTuple(n, v) if isinstance(h, NeverIndexedHeaderTuple) else (n, v)
             for h in decoded
             for n, v in (h,)]
        )
        marker = self._table_marker()
        if marker[0] is self._marker[0] and marker[1:] == self._marker[1:]:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[block] = headers
        else:
            self._cache.clear()
            self._marker = marker
        return headers


def _string(data: bytes) -> bytes:
    return bytes(encode_integer(len(data), 7)) + data


def _encode(headers: tuple[Header, ...] | list[Header]) -> bytes:
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


def encode_headers(headers: list[Header] | tuple[Header, ...]) -> bytes:
    if type(headers) is HeaderBlock:
        if headers.encoded is None:
            headers.encoded = _encode(headers)
        return headers.encoded
    key = tuple(headers)
    block = _encode_cache.get(key)
    if block is None:
        block = _encode(key)
        if len(_encode_cache) >= _CACHE_LIMIT:
            _encode_cache.clear()
        _encode_cache[key] = block
    return block
