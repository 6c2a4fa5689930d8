"""``auth_bearer_tokens FILE``: the token file, and the constant-time check.

The file holds one token per line, or ``name:token``; blank lines and lines
starting with ``#`` are ignored. Only SHA-256 digests of the tokens are kept,
so comparing digests with ``hmac.compare_digest`` takes the same time whatever
the presented token's length or content, and every entry is compared (no early
exit), so the time does not say which entry matched either.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

# RFC 6750 b64token.
_TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
_NAME = re.compile(r"[A-Za-z0-9_.@-]+")


class TokenFileError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class BearerTokens:
    """``entries``: (name, sha256 of the token). Unnamed tokens are named
    ``#LINE`` (their line in the file) for the access log."""

    path: str
    entries: tuple[tuple[str, bytes], ...] = field(repr=False)


def parse_tokens(text: str, path: str) -> BearerTokens:
    entries: list[tuple[str, bytes]] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, token = line.partition(":")
        if not colon:
            name, token = f"#{n}", line
        else:
            name, token = name.strip(), token.strip()
            if not _NAME.fullmatch(name):
                raise TokenFileError(n, "invalid token name, use letters, digits, "
                                        "\"_\", \".\", \"@\" and \"-\"")
        encoded = token.encode("utf-8", "replace")
        if not _TOKEN.fullmatch(encoded):
            # Never echo the token itself: this message reaches logs.
            raise TokenFileError(n, "invalid bearer token (RFC 6750 token characters only)")
        if name in names:
            raise TokenFileError(n, f"duplicate token name \"{name}\"")
        digest = hashlib.sha256(encoded).digest()
        if digest in digests:
            raise TokenFileError(n, "duplicate token")
        names.add(name)
        digests.add(digest)
        entries.append((name, digest))
    if not entries:
        raise TokenFileError(0, "no tokens")
    return BearerTokens(path, tuple(entries))


def authenticate(tokens: BearerTokens, authorization: bytes | None) -> str | None:
    """The name of the token in an ``authorization: Bearer TOKEN`` value, or
    None (no header, another scheme, or an unknown token)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(b" ")
    if scheme.lower() != b"bearer":  # auth schemes are case-insensitive (RFC 9110)
        return None
    digest = hashlib.sha256(credentials.strip()).digest()
    found: str | None = None
    for name, known in tokens.entries:
        if hmac.compare_digest(digest, known) and found is None:
            found = name
    return found
