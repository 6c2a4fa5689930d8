"""The live state that gauges and the admin endpoints read, as providers.

The runtime fills in what exists today; work that lands later plugs its own
provider in (etcd pool status, draining, readiness checks, balancing policy)
without the admin or metrics code changing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.config.model import Address, Config
    from proxy.relay.relay import Relay


def _zero() -> int:
    return 0


def _false() -> bool:
    return False


def _empty() -> Mapping[Any, Any]:
    return {}


def _none() -> None:
    return None


@dataclass(slots=True)
class Sources:
    relay: Relay
    # Open client connections (this process).
    downstream_connections: Callable[[], int] = _zero
    # Open upstream connections per endpoint address.
    upstream_connections: Callable[[], Mapping[Address, int]] = _empty
    # Upstream name -> status of its etcd feed: an object with connected,
    # synced_once, revision, events_applied, resyncs, last_message_at (issue 4).
    etcd: Callable[[], Mapping[str, Any]] = _empty
    # True while the process drains (issue 5): /readyz answers 503.
    draining: Callable[[], bool] = _false
    # More readiness checks: each returns None when ready, else why not.
    ready_checks: list[Callable[[], str | None]] = field(default_factory=list)
    # Set once every listener is bound and serving.
    listening: bool = False
    # The running configuration (listeners, routes, each upstream's
    # configured balancing method), for the status page; None if unknown.
    config: Callable[[], Config | None] = _none
