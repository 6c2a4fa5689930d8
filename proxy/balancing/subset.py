"""Subset routing (the "version" balancer): a request carrying metadata
``KEY: VALUE`` is balanced only over endpoints labelled KEY=VALUE.

Membership goes by labels alone, as Envoy's subset load balancer: health and
load then decide within the subset. So a subset whose endpoints are all
unhealthy gets "no healthy upstream", and only a VALUE that no endpoint
carries is a miss (UNAVAILABLE, or every endpoint with ``subset_fallback any``).
"""

from __future__ import annotations

from proxy.balancing.endpoint import Endpoint
from proxy.http2.hpack_codec import HeaderList


def request_value(headers: HeaderList, key: bytes) -> bytes | None:
    """The request's first value of metadata ``key`` (lower case), if any."""
    for k, v in headers:
        if k == key:
            return v
    return None


def labelled(endpoints: tuple[Endpoint, ...], key: str, value: str) -> tuple[Endpoint, ...]:
    return tuple(ep for ep in endpoints if (key, value) in ep.meta)
