"""Publishing discovered endpoints as pool snapshots without etcd (the watch
state is fed directly): the feed (proxy/discovery/feed.py) through the
runtime's publisher (proxy/runtime/services.py)."""

from __future__ import annotations

from types import SimpleNamespace

from proxy.balancing.pool import Registry
from proxy.config.model import Address, EtcdSource, Upstream, UpstreamServer
from proxy.discovery.feed import EtcdFeed, EtcdStatus
from proxy.discovery.watch_state import b64
from proxy.runtime.services import pool_publisher

SRC = EtcdSource(("http://127.0.0.1:2379",), "/s/")


def feed(
    static: tuple[UpstreamServer, ...] = (), generation: SimpleNamespace | None = None
) -> tuple[EtcdFeed, SimpleNamespace, Registry]:
    """A feed publishing through the runtime's publisher into a stand-in
    generation's relay and registry."""
    up = Upstream("u", static, etcd=SRC)
    if generation is None:
        generation = SimpleNamespace(
            current=True, runtime=SimpleNamespace(relay=SimpleNamespace(pools={}), registry={})
        )
    publish = pool_publisher(generation)  # type: ignore[arg-type]
    runtime = generation.runtime
    return EtcdFeed(up, publish, EtcdStatus("u")), runtime.relay, runtime.registry


def load(f: EtcdFeed, revision: int, **kvs: str) -> None:
    f.state.load(
        {
            "header": {"cluster_id": "1", "revision": str(revision)},
            "kvs": [
                {"key": b64(f"/s/{k}".encode()), "value": b64(v.encode())} for k, v in kvs.items()
            ],
        }
    )
    f._publish("synced")


def test_discovered_endpoints_follow_static_ones() -> None:
    f, relay, registry = feed((UpstreamServer(Address("10.0.0.1", 1)),))
    load(f, 5, a="10.0.0.2:1", b='{"address": "10.0.0.1:1", "weight": 9}')
    pool = relay.pools["u"]
    assert [(str(e.address), e.source, e.weight) for e in pool.primaries] == [
        ("10.0.0.1:1", "static", 1),
        ("10.0.0.2:1", "etcd", 1),
    ]  # the static line wins
    assert f.status.endpoints == 1


def test_removed_endpoints_leave_the_registry_once_idle() -> None:
    f, relay, registry = feed()
    load(f, 5, a="10.0.0.2:1", b="10.0.0.3:1")
    old = relay.pools["u"]
    busy = registry[("u", Address("10.0.0.3", 1))]
    busy.active = 1  # a call in flight on it
    load(f, 6, a="10.0.0.2:1")
    assert [str(e.address) for e in relay.pools["u"].endpoints] == ["10.0.0.2:1"]
    assert busy in [
        e.state for e in old.endpoints
    ]  # the old snapshot, held by the call, is untouched
    assert ("u", Address("10.0.0.3", 1)) in registry
    busy.active = 0
    load(f, 7, a="10.0.0.2:1")
    assert ("u", Address("10.0.0.3", 1)) not in registry
    # An endpoint that stays keeps its state object (its fails, counts).
    assert relay.pools["u"].endpoints[0].state is old.endpoints[0].state


def test_a_replaced_generation_publishes_nothing() -> None:
    """Once a reload has replaced its generation, a feed that is still
    running (it is being cancelled) changes no pool, registry or record."""
    generation = SimpleNamespace(
        current=True, runtime=SimpleNamespace(relay=SimpleNamespace(pools={}), registry={})
    )
    f, relay, registry = feed(generation=generation)
    load(f, 5, a="10.0.0.2:1")
    first, entries = relay.pools["u"], dict(registry)
    generation.current = False
    load(f, 6, a="10.0.0.3:1")
    assert relay.pools["u"] is first and registry == entries
    assert f.known["u"] == (SRC, (UpstreamServer(Address("10.0.0.2", 1), source="etcd"),))
    assert f.status.endpoints == 1


def test_the_feed_hands_over_only_what_no_static_line_has() -> None:
    published: list[tuple[str, tuple[str, ...]]] = []

    def publish(up: Upstream, discovered: tuple[UpstreamServer, ...]) -> bool:
        published.append((up.name, tuple(str(s.address) for s in discovered)))
        return True

    up = Upstream("u", (UpstreamServer(Address("10.0.0.1", 1)),), etcd=SRC)
    f = EtcdFeed(up, publish, EtcdStatus("u"))
    load(f, 5, a="10.0.0.1:1", b="10.0.0.2:1", c="10.0.0.2:1")
    assert published == [("u", ("10.0.0.2:1",))]


def test_a_reload_keeping_the_source_carries_the_feed_status_over() -> None:
    """Readiness and the etcd gauges read the status: a reload that keeps an
    upstream's etcd source must not look like a proxy that never synced (it
    serves the carried-over pool), even while etcd is down."""
    from proxy.config.model import Config
    from proxy.discovery.feed import start_etcd_feeds

    src = EtcdSource(("http://127.0.0.1:2379",), "/s/")
    moved = EtcdSource(("http://127.0.0.1:2379",), "/t/")
    config = Config(
        "p.conf", 1, {"u": Upstream("u", (), etcd=src), "v": Upstream("v", (), etcd=moved)}, ()
    )
    old = {
        name: EtcdStatus(
            name,
            connected=True,
            synced_once=True,
            revision=42,
            events_applied=7,
            resyncs=2,
            last_message_at=1.0,
            endpoints=3,
        )
        for name in ("u", "v")
    }
    known = {"u": (src, ()), "v": (src, ())}  # "v" was on another prefix before
    started: list[object] = []
    nursery = SimpleNamespace(start_soon=lambda fn, name=None: started.append(fn))
    new = start_etcd_feeds(
        nursery,
        config,
        lambda up, found: True,  # type: ignore[arg-type]
        known,
        previous=old,
    )
    assert len(started) == 2
    u, v = new["u"], new["v"]
    assert (u.synced_once, u.revision, u.events_applied, u.resyncs, u.endpoints) == (
        True,
        42,
        7,
        2,
        3,
    )
    assert u.connected is False  # until the new feed's own watch opens
    assert (v.synced_once, v.revision, v.resyncs) == (False, 0, 0)  # a new source: from zero
