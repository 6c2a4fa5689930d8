from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from proxy.balancing.endpoint import Endpoint
from proxy.balancing.pool import PoolSnapshot, Registry, build_pool, build_pools
from proxy.balancing.round_robin import pick_smooth_weighted
from proxy.config.model import Address, Upstream, UpstreamServer


def ep(port: int, weight: int = 1, **kw: object) -> Endpoint:
    return Endpoint(Address("127.0.0.1", port), weight, **kw)  # type: ignore[arg-type]


def test_smooth_weighted_round_robin_matches_nginx_sequence() -> None:
    a, b, c = ep(1, 5), ep(2), ep(3)
    seq = [pick_smooth_weighted([a, b, c]) for _ in range(7)]
    assert [x.address.port for x in seq] == [1, 1, 2, 1, 3, 1, 1]


def test_weights_three_to_one() -> None:
    pool = PoolSnapshot("u", (ep(1, 3), ep(2)), (), 1.0)
    counts = Counter(pool.pick(0.0).address.port for _ in range(400))
    assert counts == {1: 300, 2: 100}


def test_down_endpoint_is_never_picked() -> None:
    pool = PoolSnapshot("u", (ep(1), ep(2, down=True)), (), 1.0)
    assert {pool.pick(0.0).address.port for _ in range(10)} == {1}


def test_backup_only_when_no_primary_is_available() -> None:
    p1, p2, b = ep(1, max_fails=1), ep(2, max_fails=1), ep(3, backup=True)
    pool = PoolSnapshot("u", (p1, p2), (b,), 1.0)
    assert {pool.pick(0.0).address.port for _ in range(10)} == {1, 2}
    p1.record_failure(0.0)
    p2.record_failure(0.0)
    assert pool.pick(1.0) is b
    assert pool.pick(10.0) in (p1, p2)  # fail_timeout (10s) passed: tried again


def test_exclude_skips_tried_endpoints() -> None:
    p1, p2 = ep(1), ep(2)
    pool = PoolSnapshot("u", (p1, p2), (), 1.0)
    assert pool.pick(0.0, [p1]) is p2
    assert pool.pick(0.0, [p1, p2]) is None


def test_passive_health_max_fails_and_recovery() -> None:
    e = ep(1, max_fails=2, fail_timeout=5.0)
    e.record_failure(0.0)
    assert e.available(0.1)
    e.record_failure(0.2)
    assert not e.available(1.0)
    assert e.available(5.3)
    e.record_success()
    assert e.state.fails == 0 and e.available(5.4)


def test_old_failures_do_not_add_up() -> None:
    e = ep(1, max_fails=2, fail_timeout=5.0)
    e.record_failure(0.0)
    e.record_failure(6.0)
    assert e.available(6.1)


def test_max_fails_zero_disables_accounting() -> None:
    e = ep(1, max_fails=0)
    for t in range(5):
        e.record_failure(float(t))
    assert e.available(5.0)


def test_build_pools_keeps_endpoint_state_across_reloads() -> None:
    a = Address("127.0.0.1", 1)
    registry: dict = {}
    up = Upstream("u", (UpstreamServer(a, weight=2), UpstreamServer(Address("h", 2), backup=True)))
    pools = build_pools({"u": up}, registry)
    pools["u"].primaries[0].state.fails = 1
    again = build_pools({"u": Upstream("u", (UpstreamServer(a, weight=5),))}, registry)
    assert again["u"].primaries[0].state is pools["u"].primaries[0].state
    assert again["u"].primaries[0].weight == 5 and again["u"].primaries[0].state.fails == 1
    assert pools["u"].backups[0].address.host == "h"


def test_a_new_snapshot_leaves_the_running_one_its_settings() -> None:
    """A rebuild (a reload, an etcd publish) makes new endpoint settings;
    the snapshot still running keeps its own until the swap, and only the
    counters are shared."""
    a = Address("127.0.0.1", 1)
    registry: Registry = {}

    def build(*servers: UpstreamServer) -> PoolSnapshot:
        return build_pool(Upstream("u", servers), servers, registry)

    old = build(UpstreamServer(a, weight=2, max_conns=3))
    old_ep = old.primaries[0]
    new = build(UpstreamServer(a, weight=7, down=True, max_conns=9, max_fails=4))
    new_ep = new.primaries[0]
    assert (old_ep.weight, old_ep.down, old_ep.max_conns, old_ep.max_fails) == (2, False, 3, 1)
    assert (new_ep.weight, new_ep.down, new_ep.max_conns, new_ep.max_fails) == (7, True, 9, 4)
    assert old.pick(0.0) is old_ep and new.pick(0.0) is None  # down only in the new one
    assert old.capped and new.capped
    # The counters are the endpoint's, whichever snapshot a call came from.
    assert new_ep.state is old_ep.state is registry[("u", a)]
    old_ep.state.active += 1
    old_ep.record_failure(0.0)
    assert (new_ep.state.active, new_ep.state.fails) == (1, 1)
    assert old_ep.available(0.0) is False  # max_fails 1 in the old snapshot
    new_ep.state.fails = 1
    # A build whose snapshot is discarded (a failed reload) changes nothing.
    build(UpstreamServer(a, weight=1))
    assert old_ep.weight == 2 and not old_ep.down and old_ep.max_conns == 3
    assert old.primaries[0] is old_ep


def test_endpoint_settings_are_frozen() -> None:
    e = ep(1, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.weight = 5  # type: ignore[misc]
    assert e.weight == 3
