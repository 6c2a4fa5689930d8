"""``allow`` / ``deny`` values: a rule is an address or network (or ``all``)
and whether it allows. Matching a client against them is run time:
proxy/security/acl.py."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Rule:
    allow: bool
    network: Network | None  # None: "all"

    def __str__(self) -> str:
        return f"{'allow' if self.allow else 'deny'} {self.network or 'all'}"


def parse_network(value: str) -> Network | None:
    """``all``, ``ADDR`` or ``ADDR/PREFIX`` -> a network (None for all).
    Host bits set under the prefix are an error, as nginx warns about them
    ("low address bits are meaningless") and such a rule is most likely a typo.
    Raises ValueError with a message."""
    if value == "all":
        return None
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        if "has host bits set" in str(e):
            raise ValueError(f"low address bits of {value} are meaningless") from None
        raise ValueError(f"invalid address or network {value!r}") from None
