"""The constant-time bearer token check (the token file itself is read with
the configuration: proxy/config/tokens.py).

Only digests of the known tokens are kept, so comparing digests with
``hmac.compare_digest`` takes the same time whatever the presented token's
length or content, and every entry is compared (no early exit), so the time
does not say which entry matched either.
"""

from __future__ import annotations

import hmac

from proxy.config.tokens import BearerTokens, token_digest


def authenticate(tokens: BearerTokens, authorization: bytes | None) -> str | None:
    """The name of the token in an ``authorization: Bearer TOKEN`` value, or
    None (no header, another scheme, or an unknown token)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(b" ")
    if scheme.lower() != b"bearer":  # auth schemes are case-insensitive (RFC 9110)
        return None
    digest = token_digest(credentials.strip())
    found: str | None = None
    for name, known in tokens.entries:
        if hmac.compare_digest(digest, known) and found is None:
            found = name
    return found
