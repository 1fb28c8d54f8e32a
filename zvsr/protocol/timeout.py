"""Logical-time timeouts (in the manner of TigerBeetle's `Timeout`).

The core has no clock. The driver calls `Replica.tick()` at a fixed rate; each tick advances every running
timeout by one. A timeout is started, reset or stopped by the role that owns it (rule 11: timers belong to
roles), and `fired()` says whether it has run its course. `backoff()` lengthens the next period exponentially,
with jitter drawn from the injected PRNG, so duelling replicas drift apart deterministically per seed.
"""

from __future__ import annotations

from typing import Protocol


class Prng(Protocol):
    """The slice of `random.Random` the core uses; the driver injects a seeded instance."""

    def randrange(self, start: int, stop: int = ..., step: int = ...) -> int: ...

    def getrandbits(self, k: int, /) -> int: ...


class Timeout:
    __slots__ = ("name", "after", "_base", "_max", "_attempts", "_ticks", "_running")

    def __init__(self, name: str, *, after: int, after_max: int | None = None) -> None:
        assert after > 0
        self.name = name
        self.after = after
        self._base = after
        self._max = after_max if after_max is not None else after
        assert self._max >= after
        self._attempts = 0
        self._ticks = 0
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Start from zero, forgetting any backoff."""
        self._attempts = 0
        self.after = self._base
        self._ticks = 0
        self._running = True

    def reset(self) -> None:
        """Start the current period again (keeps backoff)."""
        self._ticks = 0
        self._running = True

    def stop(self) -> None:
        self._running = False
        self._ticks = 0

    def tick(self) -> None:
        if self._running:
            self._ticks += 1

    def advance(self, ticks: int) -> None:
        """`ticks` ticks at once (a driver that skips ticks in which nothing can happen catches up)."""
        assert ticks >= 0
        if self._running:
            self._ticks += ticks

    def fired(self) -> bool:
        return self._running and self._ticks >= self.after

    @property
    def elapsed(self) -> int:
        """Ticks since the period (re)started; negative while a `delay` lasts."""
        return self._ticks

    def backoff(self, prng: Prng) -> None:
        """Double the period (up to the cap), add up to one base period of jitter, and restart."""
        self._attempts = min(self._attempts + 1, 16)
        period = min(self._base << self._attempts, self._max)
        self.after = period + prng.randrange(0, self._base + 1)
        self._ticks = 0
        self._running = True

    def delay(self, ticks: int) -> None:
        """This period only runs `ticks` longer (a reset or restart forgets it)."""
        assert ticks >= 0
        self._ticks -= ticks

    def jitter(self, prng: Prng, spread: int) -> None:
        """Restart with a random extra of 0..spread ticks (spreads out backups' primary timeouts)."""
        self.after = self._base + (prng.randrange(0, spread + 1) if spread > 0 else 0)
        self._ticks = 0
        self._running = True
