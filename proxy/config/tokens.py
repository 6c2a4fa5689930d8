"""``auth_bearer_tokens FILE``: the token file, read when the configuration
is loaded. Checking a presented token is run time: proxy/security/tokens.py.

The file holds one token per line, or ``name:token``; blank lines and lines
starting with ``#`` are ignored. Only SHA-256 digests of the tokens are kept
(``token_digest``), so the check can compare digests in constant time.
"""

from __future__ import annotations

import hashlib
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
    """``entries``: (name, ``token_digest`` of the token). Unnamed tokens are
    named ``#LINE`` (their line in the file) for the access log."""

    path: str
    entries: tuple[tuple[str, bytes], ...] = field(repr=False)


def token_digest(token: bytes) -> bytes:
    """What ``BearerTokens`` keeps of a token, and what a presented one is
    compared by."""
    return hashlib.sha256(token).digest()


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
                raise TokenFileError(
                    n, 'invalid token name, use letters, digits, "_", ".", "@" and "-"'
                )
        encoded = token.encode("utf-8", "replace")
        if not _TOKEN.fullmatch(encoded):
            # Never echo the token itself: this message reaches logs.
            raise TokenFileError(n, "invalid bearer token (RFC 6750 token characters only)")
        if name in names:
            raise TokenFileError(n, f'duplicate token name "{name}"')
        digest = token_digest(encoded)
        if digest in digests:
            raise TokenFileError(n, "duplicate token")
        names.add(name)
        digests.add(digest)
        entries.append((name, digest))
    if not entries:
        raise TokenFileError(0, "no tokens")
    return BearerTokens(path, tuple(entries))
