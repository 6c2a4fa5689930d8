"""Publishing discovered endpoints as pool snapshots (proxy/discovery/feed.py),
without etcd: the watch state is fed directly."""

from __future__ import annotations

from types import SimpleNamespace

from proxy.balancing.pool import Registry
from proxy.config.model import Address, EtcdSource, Upstream, UpstreamServer
from proxy.discovery.feed import EtcdFeed, EtcdStatus
from proxy.discovery.watch_state import b64


def feed(static: tuple[UpstreamServer, ...] = ()) -> tuple[EtcdFeed, SimpleNamespace, Registry]:
    up = Upstream("u", static, etcd=EtcdSource(("http://127.0.0.1:2379",), "/s/"))
    relay = SimpleNamespace(pools={})
    registry: Registry = {}
    return EtcdFeed(up, relay, registry, EtcdStatus("u")), relay, registry  # type: ignore[arg-type]


def load(f: EtcdFeed, revision: int, **kvs: str) -> None:
    f.state.load({"header": {"cluster_id": "1", "revision": str(revision)},
                  "kvs": [{"key": b64(f"/s/{k}".encode()), "value": b64(v.encode())}
                          for k, v in kvs.items()]})
    f._publish("synced")


def test_discovered_endpoints_follow_static_ones() -> None:
    f, relay, registry = feed((UpstreamServer(Address("10.0.0.1", 1)),))
    load(f, 5, a="10.0.0.2:1", b='{"address": "10.0.0.1:1", "weight": 9}')
    pool = relay.pools["u"]
    assert [(str(e.address), e.source, e.weight) for e in pool.primaries] == [
        ("10.0.0.1:1", "static", 1), ("10.0.0.2:1", "etcd", 1)]  # the static line wins
    assert f.status.endpoints == 1


def test_removed_endpoints_leave_the_registry_once_idle() -> None:
    f, relay, registry = feed()
    load(f, 5, a="10.0.0.2:1", b="10.0.0.3:1")
    old = relay.pools["u"]
    busy = registry[("u", Address("10.0.0.3", 1))]
    busy.active = 1  # a call in flight on it
    load(f, 6, a="10.0.0.2:1")
    assert [str(e.address) for e in relay.pools["u"].endpoints] == ["10.0.0.2:1"]
    assert busy in old.endpoints  # the old snapshot, held by the call, is untouched
    assert ("u", Address("10.0.0.3", 1)) in registry
    busy.active = 0
    load(f, 7, a="10.0.0.2:1")
    assert ("u", Address("10.0.0.3", 1)) not in registry
    # An endpoint that stays keeps its state object (its fails, counts).
    assert relay.pools["u"].endpoints[0] is old.endpoints[0]
