"""The per-call access check of a location with ``allow``/``deny`` or
``auth_bearer_tokens`` (the relay calls it only when ``location.access`` is
set, so calls elsewhere pay nothing). Address rules run first, then the
token, as nginx's access phase (``satisfy all``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.security.acl import IPAddress, allowed, parse_ip
from proxy.security.tokens import authenticate
from proxy.status import Answer, Failure, answer_for

if TYPE_CHECKING:
    from proxy.config.model import Access
    from proxy.http2.hpack_codec import HeaderList
    from proxy.relay.link import Link

FORBIDDEN = answer_for(Failure.FORBIDDEN)
NO_TOKEN = answer_for(Failure.UNAUTHENTICATED, reason="no bearer token")
BAD_TOKEN = answer_for(Failure.UNAUTHENTICATED, reason="unknown bearer token")


class ClientIdentity:
    """What a client connection proved: its address, and the subject of its
    verified TLS client certificate (None without one)."""

    __slots__ = ("ip", "subject")

    def __init__(self, ip: IPAddress | None, subject: str | None = None) -> None:
        self.ip = ip
        self.subject = subject


def client_of(link: Link) -> ClientIdentity:
    client = link.client
    if not isinstance(client, ClientIdentity):  # None: not set by the listener
        client = link.client = ClientIdentity(parse_ip(link.peer))
    return client


def check(
    access: Access, link: Link, headers: HeaderList
) -> tuple[Answer | None, str | None, HeaderList]:
    """(refusal or None, the token's name or None, the headers to forward)."""
    if access.rules and not allowed(access.rules, client_of(link).ip):
        return FORBIDDEN, None, headers
    name: str | None = None
    if access.tokens is not None:
        value: bytes | None = None
        for k, v in headers:
            if k == b"authorization":
                value = v
                break
        if value is None:
            return NO_TOKEN, None, headers
        name = authenticate(access.tokens, value)
        if name is None:
            return BAD_TOKEN, None, headers
    if access.strip:
        headers = [h for h in headers if h[0] != b"authorization"]
    return None, name, headers
