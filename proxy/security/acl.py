"""``allow`` / ``deny`` at run time, nginx's ngx_http_access_module: the first
rule that matches the client address decides; no match allows. The rules
are read with the configuration (proxy/config/acl.py)."""

from __future__ import annotations

import ipaddress

from proxy.config.acl import Rule

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
