"""The simulator's virtual network: delay with jitter, loss, duplication, reordering, partitions and slow links.

Every message is an event on one heap ordered by (virtual time in ms, sequence number), so a seed fixes the
whole interleaving. Reordering is a consequence of jitter. Partitions are sets of blocked *directed* links, so
one-way partitions (a replica that can send but not receive) are expressible. Links are named by endpoints:
replica indexes, and clients as ("c", client_id) — both appear only as opaque hashables here.

A throttled link has a bandwidth: a message takes its encoded size / rate to go through, after the messages
queued on the link before it (as over a slow TCP link, where a big message holds up every later one).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class NetworkOptions:
    delay_ms_min: int = 1
    delay_ms_max: int = 12
    loss: float = 0.02
    duplicate: float = 0.01


@dataclass(order=True, slots=True)
class Event:
    at: int
    sequence: int
    kind: str = field(compare=False)
    payload: Any = field(compare=False)


class EventQueue:
    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._sequence = 0

    def push(self, at: int, kind: str, payload: Any) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, Event(at, self._sequence, kind, payload))

    def pop(self) -> Event:
        return heapq.heappop(self._heap)

    def __len__(self) -> int:
        return len(self._heap)


class Network:
    def __init__(self, *, prng: random.Random, events: EventQueue, options: NetworkOptions) -> None:
        self.prng = prng
        self.events = events
        self.options = options
        self.blocked: set[tuple[Hashable, Hashable]] = set()
        # Clogged links (VOPR's "path clogging"): (source, to) -> (until_ms, extra_delay_ms). A slow link opens
        # the windows in which a replica waits for state while the rest of the cluster moves on.
        self.clogged: dict[tuple[Hashable, Hashable], tuple[int, int]] = {}
        # Slow links: (source, to) -> bytes per virtual ms, and when the link is free of what it already carries.
        self.throttled: dict[tuple[Hashable, Hashable], float] = {}
        self.busy_until: dict[tuple[Hashable, Hashable], float] = {}
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0

    def send(self, now: int, source: Hashable, to: Hashable, message: Any, *, size: int = 0) -> None:
        """Send `message` (`size` encoded bytes: what a throttled link takes time for)."""
        self.sent += 1
        if (source, to) in self.blocked or self.prng.random() < self.options.loss:
            self.dropped += 1
            return
        copies = 2 if self.prng.random() < self.options.duplicate else 1
        self.duplicated += copies - 1
        extra = 0
        clog = self.clogged.get((source, to)) if self.clogged else None
        if clog is not None:
            if clog[0] > now:
                extra = clog[1]
            else:
                del self.clogged[(source, to)]
        rate = self.throttled.get((source, to)) if self.throttled else None
        if rate is not None:
            start = max(float(now), self.busy_until.get((source, to), 0.0))
            self.busy_until[(source, to)] = start + size / rate
            extra += int(self.busy_until[(source, to)] - now)
        for _ in range(copies):
            delay = self.prng.randint(self.options.delay_ms_min, self.options.delay_ms_max) + extra
            self.events.push(now + delay, "deliver", (source, to, message))

    def delivered_through(self, source: Hashable, to: Hashable) -> bool:
        """A partition also catches messages already in flight when it was made."""
        return (source, to) not in self.blocked

    def block(self, source: Hashable, to: Hashable) -> None:
        self.blocked.add((source, to))

    def clog(self, source: Hashable, to: Hashable, *, until_ms: int, extra_delay_ms: int) -> None:
        self.clogged[(source, to)] = (until_ms, extra_delay_ms)

    def throttle(self, source: Hashable, to: Hashable, *, bytes_per_ms: float) -> None:
        """From now on the link carries `bytes_per_ms` (30 kbit/s is 3.75), until `heal`."""
        assert bytes_per_ms > 0
        self.throttled[(source, to)] = bytes_per_ms

    def heal(self) -> None:
        self.blocked.clear()
        self.clogged.clear()
        self.throttled.clear()
