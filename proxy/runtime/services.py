"""The per-config services and their wiring: the one module that knows both
the runtime (``Runtime``, ``Generation``, the relay's live pools, the endpoint
registry) and the services (active health checks, proxy/runtime/health.py;
etcd feeds, proxy/discovery/feed.py, which know nothing of the runtime).

``PER_CONFIG_SERVICES`` is the whole list, in start order; ``Runtime`` gets it
from ``_main`` (proxy/runtime/main.py). A starter is called once per
generation as ``starter(generation, nursery)`` (see generation.py).

Who calls whom for discovery: ``etcd_feed_service`` starts the feeds once the
generation is live, handing each ``pool_publisher(generation)``; a feed calls
it with an upstream and the endpoints it found; the publisher builds the pool
snapshot (static servers plus discovered, states from the registry), puts it
in ``relay.pools``, and drops from the registry the etcd endpoints that are
gone and idle. A generation replaced by a reload publishes nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from proxy.balancing.pool import build_pool
from proxy.config.model import Upstream, UpstreamServer
from proxy.discovery.feed import Publish, start_etcd_feeds
from proxy.runtime.generation import ServiceStarter
from proxy.runtime.health import health_check_service

if TYPE_CHECKING:
    from proxy.runtime.generation import Generation
    from proxy.runtime.main import Runtime


def pool_publisher(generation: Generation) -> Publish:
    """The feeds' way into the live pools, while ``generation`` is current."""
    runtime = generation.runtime
    registry = runtime.registry

    def publish(upstream: Upstream, discovered: tuple[UpstreamServer, ...]) -> bool:
        if not generation.current:
            return False
        runtime.relay.pools[upstream.name] = build_pool(
            upstream, upstream.servers, registry, discovered=discovered
        )
        # Endpoints gone from etcd (or from the config, by a reload) leave the
        # registry once no call holds them; calls in flight keep their Endpoint
        # and its state (and old snapshot) anyway. The registry holds counters
        # only: where an endpoint came from is a snapshot's setting.
        kept = {s.address for s in upstream.servers} | {s.address for s in discovered}
        for key, state in list(registry.items()):
            if key[0] == upstream.name and key[1] not in kept and not state.active:
                del registry[key]
        return True

    return publish


def etcd_feed_service(generation: Generation, nursery: trio.Nursery) -> None:
    """Feeds start once this generation's pools are live, and stop publishing
    once a reload has replaced it."""
    runtime = generation.runtime
    if not any(up.etcd is not None for up in generation.config.upstreams.values()):
        runtime.etcd_status = {}
        return

    async def start() -> None:
        await generation.activated.wait()
        runtime.etcd_status = start_etcd_feeds(
            nursery,
            generation.config,
            pool_publisher(generation),
            runtime.discovered,
            previous=runtime.etcd_status,
        )

    nursery.start_soon(start)


def etcd_not_synced(runtime: Runtime) -> str | None:
    """A readiness check: why not ready while an etcd-fed upstream has not
    synced yet, else None."""
    for name, up in runtime.config.upstreams.items():
        status = runtime.etcd_status.get(name)
        if up.etcd is not None and (status is None or not status.synced_once):
            return f"upstream {name}: etcd has not synced yet"
    return None


PER_CONFIG_SERVICES: tuple[ServiceStarter, ...] = (health_check_service, etcd_feed_service)
