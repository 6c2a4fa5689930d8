"""The last-minute rate window and the per-method rows, with plain values
and a hand-moved clock."""

from __future__ import annotations

import pytest

from proxy.metrics.rates import RateWindow, method_rates


def test_nothing_until_two_samples_then_increase_over_the_covered_seconds() -> None:
    w: RateWindow[str] = RateWindow(60.0)
    assert w.increase() == ({}, 0.0)
    w.add(100.0, {"a": 5})
    assert w.increase() == ({}, 0.0)  # the base: counts before the window
    w.add(102.0, {"a": 9, "b": 1})
    assert w.increase() == ({"a": 4, "b": 1}, 2.0)
    w.add(104.0, {"a": 9, "b": 1})
    assert w.increase() == ({"a": 4, "b": 1}, 4.0)  # idle keys keep their window
    assert w.totals() == {"a": 9, "b": 1}


def test_the_window_slides_one_minute() -> None:
    w: RateWindow[str] = RateWindow(60.0)
    for t in range(0, 121):  # one sample a second, one call a second
        w.add(float(t), {"a": t})
    inc, seconds = w.increase()
    assert seconds == 60.0 and inc == {"a": 60}
    assert len(w) == 61
    for t in range(121, 151):  # idle for 30 s: half of the window left
        w.add(float(t), {"a": 120})
    assert w.increase() == ({"a": 30}, 60.0)
    for t in range(151, 190):
        w.add(float(t), {"a": 120})
    assert w.increase() == ({}, 60.0)


def test_irregular_samples_cover_at_least_the_span() -> None:
    w: RateWindow[str] = RateWindow(60.0)
    w.add(0.0, {"a": 0})
    w.add(50.0, {"a": 10})
    w.add(70.0, {"a": 30})
    # The base is the newest sample at or before 70 - 60 = 10: the first one.
    assert w.increase() == ({"a": 30}, 70.0)
    w.add(115.0, {"a": 40})
    assert w.increase() == ({"a": 30}, 65.0)  # base 50 (<= 55), not 70


def test_a_counter_that_went_down_restarted() -> None:
    w: RateWindow[tuple[str, str]] = RateWindow(60.0)
    w.add(0.0, {("s", "OK"): 100})
    w.add(1.0, {("s", "OK"): 103})
    w.add(2.0, {("s", "OK"): 2})  # restarted from 0: 2 more
    assert w.increase() == ({("s", "OK"): 5}, 2.0)


def test_a_gap_longer_than_the_span_starts_over() -> None:
    w: RateWindow[str] = RateWindow(60.0)
    w.add(0.0, {"a": 0})
    w.add(2.0, {"a": 10})
    w.add(500.0, {"a": 50})  # nobody asked for 8 minutes
    assert w.increase() == ({}, 0.0)
    w.add(502.0, {"a": 54})
    assert w.increase() == ({"a": 4}, 2.0)


def test_an_out_of_order_sample_is_ignored() -> None:
    w: RateWindow[str] = RateWindow(60.0)
    w.add(10.0, {"a": 1})
    w.add(12.0, {"a": 3})
    w.add(11.0, {"a": 100})
    assert w.increase() == ({"a": 2}, 2.0)


def test_too_many_samples_merge_but_keep_the_counts_and_span() -> None:
    w: RateWindow[str] = RateWindow(60.0, max_samples=8)
    for i in range(200):  # ten samples a second
        w.add(i / 10, {"a": i})
    assert len(w) <= 8
    inc, seconds = w.increase()
    assert seconds >= 10.0 and inc["a"] == pytest.approx(seconds * 10)
    w2: RateWindow[str] = RateWindow(5.0, max_samples=4)
    for i in range(100):
        w2.add(float(i), {"a": 2 * i})
    inc, seconds = w2.increase()
    assert len(w2) <= 4 and seconds >= 5.0 and inc["a"] == 2 * seconds


def test_span_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateWindow(0)


def test_method_rates_rows() -> None:
    increase = {
        ("svc", "Get", "up", "OK"): 90.0,
        ("svc", "Get", "up", "UNAVAILABLE"): 10.0,
        ("svc", "Put", "up", "OK"): 3.0,
        ("gone", "X", "up", "INTERNAL"): 1.0,
    }
    totals = {
        ("svc", "Get", "up", "OK"): 1000.0,
        ("svc", "Get", "up", "UNAVAILABLE"): 20.0,
        ("svc", "Put", "up", "OK"): 3.0,
        ("svc", "Old", "up", "OK"): 50.0,
        ("svc", "Older", "up", "NOT_FOUND"): 7.0,
    }
    rows = method_rates(increase, totals)
    assert [(r.service, r.method) for r in rows] == [
        ("svc", "Get"),
        ("svc", "Put"),
        ("gone", "X"),
        ("svc", "Old"),
        ("svc", "Older"),
    ]
    get, put, gone, old, older = rows
    assert (get.calls, get.errors, get.total) == (100, 10, 1020)
    assert get.error_ratio == 0.1 and get.per_second(50.0) == 2.0
    assert get.codes == {"OK": 90, "UNAVAILABLE": 10}
    assert (put.errors, put.error_ratio) == (0, 0.0)
    assert (gone.calls, gone.errors, gone.total) == (1, 1, 0)
    assert (old.calls, old.per_second(60.0), old.error_ratio, old.total) == (0, 0.0, 0.0, 50)
    assert older.per_second(0.0) == 0.0 and older.codes == {}
