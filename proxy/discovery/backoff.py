"""Reconnect delays: exponential with jitter, capped low so a returning etcd
is noticed within about a second."""

from __future__ import annotations

import random


class Backoff:
    __slots__ = ("base", "cap", "factor", "_next", "_rng")

    def __init__(
        self,
        base: float = 0.05,
        cap: float = 1.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.factor = factor
        self._next = base
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt: in [d/2, d] with d doubling up to cap
        ("equal jitter", so many proxies do not retry in step)."""
        d = self._next
        self._next = min(self.cap, d * self.factor)
        return d / 2 + self._rng.random() * d / 2

    def reset(self) -> None:
        self._next = self.base
