"""``allow`` / ``deny`` rules, nginx's ngx_http_access_module: the first rule
that matches the client address decides; no match allows."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


def parse_ip(peer: str) -> IPAddress | None:
    """The address of a ``host:port`` / ``[v6]:port`` peer string; an
    IPv4-mapped IPv6 address counts as its IPv4 address (as nginx)."""
    host = peer.rpartition(":")[0].strip("[]") if ":" in peer else peer
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def allowed(rules: tuple[Rule, ...], ip: IPAddress | None) -> bool:
    """First match wins; an unknown address matches only ``all``."""
    for rule in rules:
        net = rule.network
        if net is None or (ip is not None and ip.version == net.version and ip in net):
            return rule.allow
    return True
