"""The watch state: applying etcd range/watch messages (proxy/discovery/watch_state.py)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.discovery.backoff import Backoff
from proxy.discovery.watch_state import Verdict, WatchState, b64, prefix_range_end

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CID = "111"


def header(revision: int, cluster_id: str = CID) -> dict:
    return {"cluster_id": cluster_id, "member_id": "1", "revision": str(revision)}


def kv(key: str, value: str, mod: int) -> dict:
    return {"key": b64(key.encode()), "value": b64(value.encode()), "mod_revision": str(mod)}


def put(key: str, value: str, mod: int, hdr: int | None = None) -> dict:
    return {"header": header(hdr or mod), "events": [{"kv": kv(key, value, mod)}]}


def delete(key: str, mod: int) -> dict:
    return {
        "header": header(mod),
        "events": [{"type": "DELETE", "kv": {"key": b64(key.encode()), "mod_revision": str(mod)}}],
    }


def range_response(revision: int, **kvs: str) -> dict:
    return {"header": header(revision), "kvs": [kv(f"/s/{k}", v, revision) for k, v in kvs.items()]}


def addresses(state: WatchState) -> list[str]:
    return [str(s.address) for s in state.servers()]


def test_prefix_range_end() -> None:
    assert prefix_range_end(b"/s/") == b"/s0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\0"


def test_load_then_events() -> None:
    st_ = WatchState("u")
    assert st_.load(range_response(5, a="10.0.0.1:1", b="10.0.0.2:1"))
    assert (st_.revision, st_.cluster_id) == (5, CID)
    assert st_.apply({"header": header(5), "created": True}) is Verdict.NOTHING
    assert st_.apply(put("/s/c", "10.0.0.3:1", 6)) is Verdict.CHANGED
    assert st_.apply(delete("/s/a", 7)) is Verdict.CHANGED
    assert addresses(st_) == ["10.0.0.2:1", "10.0.0.3:1"]
    assert (st_.revision, st_.events_applied) == (7, 2)


def test_events_are_applied_once() -> None:
    st_ = WatchState("u")
    st_.load(range_response(5))
    assert st_.apply(put("/s/a", "10.0.0.1:1", 6)) is Verdict.CHANGED
    assert st_.apply(delete("/s/a", 7)) is Verdict.CHANGED
    # A reopened watch replays from an older revision: nothing comes back.
    assert st_.apply(put("/s/a", "10.0.0.1:1", 6, hdr=7)) is Verdict.NOTHING
    assert addresses(st_) == [] and st_.events_applied == 2


def test_same_revision_events_in_one_response() -> None:
    st_ = WatchState("u")
    st_.load(range_response(5))
    txn = {
        "header": header(6),
        "events": [{"kv": kv("/s/a", "10.0.0.1:1", 6)}, {"kv": kv("/s/b", "10.0.0.2:1", 6)}],
    }
    assert st_.apply(txn) is Verdict.CHANGED
    assert addresses(st_) == ["10.0.0.1:1", "10.0.0.2:1"]


def test_unchanged_value_is_not_a_change() -> None:
    st_ = WatchState("u")
    st_.load(range_response(5, a="10.0.0.1:1"))
    assert st_.apply(put("/s/a", "10.0.0.1:1", 6)) is Verdict.NOTHING
    assert st_.revision == 6


def test_progress_notification_advances_revision() -> None:
    st_ = WatchState("u")
    st_.load(range_response(5))
    assert st_.apply({"header": header(9)}) is Verdict.NOTHING
    assert st_.revision == 9
    assert st_.apply({"header": header(12), "created": True}) is Verdict.NOTHING
    assert st_.revision == 9  # "created" says nothing about delivered events


@pytest.mark.parametrize(
    "result",
    [
        {"header": {"cluster_id": CID}, "canceled": True, "compact_revision": "8"},
        {"header": header(3)},  # revision went back: a restored or wiped etcd
        {"header": header(20, cluster_id="222"), "created": True},  # another cluster
    ],
)
def test_resync(result: dict) -> None:
    st_ = WatchState("u")
    st_.load(range_response(5, a="10.0.0.1:1"))
    assert st_.apply(result) is Verdict.RESYNC
    assert st_.reason
    assert addresses(st_) == ["10.0.0.1:1"]  # the last known pool stays until the resync


def test_canceled_without_compaction_reopens() -> None:
    st_ = WatchState("u")
    st_.load(range_response(5))
    result = {"header": header(5), "canceled": True, "cancel_reason": "permission denied"}
    assert st_.apply(result) is Verdict.REOPEN
    assert "permission denied" in st_.reason


def test_resync_replaces_everything() -> None:
    st_ = WatchState("u")
    st_.load(range_response(5, a="10.0.0.1:1", b="10.0.0.2:1"))
    assert st_.load(range_response(2, c="10.0.0.3:1"))
    assert addresses(st_) == ["10.0.0.3:1"] and st_.revision == 2
    assert not st_.load(range_response(3, c="10.0.0.3:1"))


def test_bad_value_skipped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    st_ = WatchState("users")
    with caplog.at_level(logging.WARNING, logger="grpc_proxy.etcd"):
        st_.load(range_response(5, a="10.0.0.1:1", bad="garbage"))
        st_.load(range_response(6, a="10.0.0.1:1", bad="garbage"))  # a resync: no repeat
        st_.apply(put("/s/bad", "garbage", 7))  # the same bad value again: no repeat
    assert addresses(st_) == ["10.0.0.1:1"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert '"/s/bad"' in warnings[0] and "users" in warnings[0]
    # A fixed value replaces it; a new bad value warns again, and drops the key.
    st_.apply(put("/s/bad", "10.0.0.2:1", 8))
    assert addresses(st_) == ["10.0.0.1:1", "10.0.0.2:1"]
    with caplog.at_level(logging.WARNING, logger="grpc_proxy.etcd"):
        st_.apply(put("/s/bad", "garbage2", 9))
    assert addresses(st_) == ["10.0.0.1:1"]
    assert len(caplog.records) == 2


_ops = st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3)), max_size=30)


@SETTINGS
@given(_ops, st.data())
def test_any_replay_prefix_gives_the_same_state(ops: list, data: st.DataObject) -> None:
    """Events applied once, with a reconnect replaying any earlier suffix, end
    where a clean single pass ends (etcd's contents)."""
    stream = []
    for i, (key, port) in enumerate(ops, start=2):
        stream.append(
            delete(f"/s/{key}", i) if port == 0 else put(f"/s/{key}", f"10.0.0.1:{port}", i)
        )
    clean, replayed = WatchState("u"), WatchState("u")
    for s in (clean, replayed):
        s.load(range_response(1))
    for msg in stream:
        clean.apply(msg)
    cut = data.draw(st.integers(0, len(stream)))
    back = data.draw(st.integers(0, cut))
    for msg in stream[:cut] + stream[back:]:
        replayed.apply(msg)
    assert replayed.entries == clean.entries
    assert replayed.events_applied == clean.events_applied == len(stream)


def test_backoff_grows_to_cap_and_resets() -> None:
    b = Backoff(base=0.1, cap=1.0)
    delays = [b.next() for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(0.5 <= d <= 1.0 for d in delays[5:])
    b.reset()
    assert b.next() <= 0.1
