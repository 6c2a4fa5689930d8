"""Rates over the last minute from cumulative counters, without sockets or
clocks: the status page's calls/s and error rate per service and method.

``RateWindow`` takes samples of cumulative totals (``add(now, totals)``), keeps
what changed between consecutive samples, and answers the increase per key
over the last ``span`` seconds and the seconds that increase covers (exactly
the time between the two samples it spans, so a rate is increase / seconds
even while the window is still filling up). A total that went down is a
counter that restarted: its new value is the increase, as Prometheus'
``rate()`` does. A sample more than ``span`` after the previous one starts
the window over.

``method_rates`` turns per (service, method, upstream, code) increases and
totals into one row per service/method: calls/s, error ratio (any code but
OK), the codes seen, and the calls since the start.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

SPAN = 60.0  # seconds: "the last minute"
OK = "OK"


class RateWindow(Generic[K]):
    """Increases of cumulative counters over the last ``span`` seconds.

    Memory is bounded by ``max_samples`` (beyond it, the oldest two samples
    after the base merge into one) and by what changed: an idle key costs
    nothing per sample."""

    def __init__(self, span: float = SPAN, max_samples: int = 256) -> None:
        if span <= 0:
            raise ValueError("span must be positive")
        self.span = span
        self.max_samples = max(2, max_samples)
        # (time, what increased since the previous sample); the first entry is
        # the base: its increases are before the window and not counted.
        self._deltas: deque[tuple[float, dict[K, float]]] = deque()
        self._last: dict[K, float] = {}
        self._sum: dict[K, float] = {}  # sum of the counted deltas

    def __len__(self) -> int:
        return len(self._deltas)

    def add(self, now: float, totals: Mapping[K, float]) -> None:
        """A sample of every counter's cumulative value at ``now``. Samples
        must come in time order; one older than the newest is ignored."""
        if self._deltas and now < self._deltas[-1][0]:
            return
        if self._deltas and now - self._deltas[-1][0] > self.span:
            # Nothing sampled for longer than the window: an increase over
            # that gap is no last-minute rate, so start over from here.
            self._deltas.clear()
            self._sum.clear()
        last = self._last
        delta: dict[K, float] = {}
        if self._deltas:
            for key, value in totals.items():
                before = last.get(key, 0.0)
                inc = value - before if value >= before else value  # restarted
                if inc > 0:
                    delta[key] = inc
        self._last = dict(totals)
        self._deltas.append((now, delta))
        acc = self._sum
        for key, inc in delta.items():
            acc[key] = acc.get(key, 0.0) + inc
        self._expire(now)

    def _expire(self, now: float) -> None:
        """Keep as base the newest sample at or before ``now - span``."""
        deltas = self._deltas
        cutoff = now - self.span
        while len(deltas) >= 2 and deltas[1][0] <= cutoff:
            deltas.popleft()
            # The new base's increases happened before the window starts.
            self._drop(deltas[0][1])
            deltas[0] = (deltas[0][0], {})
        if len(deltas) > self.max_samples:
            # Too many samples: the two oldest after the base become one (the
            # window keeps its span, at a coarser step).
            d1 = deltas[1][1]
            d2 = deltas[2][1]
            for key, inc in d1.items():
                d2[key] = d2.get(key, 0.0) + inc
            del deltas[1]

    def _drop(self, delta: dict[K, float]) -> None:
        acc = self._sum
        for key, inc in delta.items():
            left = acc.get(key, 0.0) - inc
            if left > 1e-9:
                acc[key] = left
            else:
                acc.pop(key, None)

    def increase(self) -> tuple[dict[K, float], float]:
        """(increase per key with any, seconds covered) between the base
        sample and the newest: seconds is 0 until there are two samples."""
        if len(self._deltas) < 2:
            return {}, 0.0
        return dict(self._sum), self._deltas[-1][0] - self._deltas[0][0]

    def totals(self) -> dict[K, float]:
        """The newest sample's cumulative values."""
        return dict(self._last)


@dataclass(slots=True)
class MethodRate:
    service: str
    method: str
    upstream: str
    calls: float = 0.0  # in the window
    errors: float = 0.0  # calls in the window that ended with a code other than OK
    total: float = 0.0  # since the counters started
    codes: dict[str, float] = field(default_factory=dict)  # in the window, by code

    def per_second(self, seconds: float) -> float:
        return self.calls / seconds if seconds > 0 else 0.0

    @property
    def error_ratio(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


CallKey = tuple[str, str, str, str]  # service, method, upstream, code


def method_rates(
    increase: Mapping[CallKey, float], totals: Mapping[CallKey, float]
) -> list[MethodRate]:
    """One row per (service, method, upstream) that has any call since the
    start: busiest in the window first, then most calls overall, then by name."""
    rows: dict[tuple[str, str, str], MethodRate] = {}
    for (service, method, upstream, _), n in totals.items():
        key = (service, method, upstream)
        row = rows.get(key)
        if row is None:
            row = rows[key] = MethodRate(service, method, upstream)
        row.total += n
    for (service, method, upstream, code), n in increase.items():
        key = (service, method, upstream)
        row = rows.get(key)
        if row is None:  # counted in the window, gone from the totals since
            row = rows[key] = MethodRate(service, method, upstream)
        row.calls += n
        if code != OK:
            row.errors += n
        row.codes[code] = row.codes.get(code, 0.0) + n
    return sorted(
        rows.values(), key=lambda r: (-r.calls, -r.total, r.service, r.method, r.upstream)
    )
