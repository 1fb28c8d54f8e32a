"""Cluster time: the timestamps the primary puts on log entries (sans-IO: the clock is injected).

Theory of operation. Apps that expire things (the coordination app's leases) need time, and `apply` must be
deterministic on every replica and after every replay, so time lives in the log: the primary stamps each entry
it appends (`LogEntry.timestamp`, ns), and the app reads the stamp (`OpContext.timestamp_ns`), never a clock.
TigerBeetle assigns its timestamps the same way.

A replica's *cluster clock* is the largest stamp it knows (`known`: from its log, its snapshot, entries it
received) advanced by its own monotonic clock since it learned that stamp (`known_at`), and never below a stamp
it issued or learned (`last`). A backup re-bases on every newer stamp, so its clock tracks the primary's and
differences in clock rate do not accumulate over its uptime. So:
- stamps strictly increase along the log: the primary stamps max(its cluster clock, last stamp + 1);
- a new primary continues from the largest stamp in the log it adopted (it learned every stamp in it), and time
  keeps running through a failover from the moment it last heard of one, measured on its own clock;
- a restarted replica starts from the largest stamp on its disk (log or snapshot): the time it was down is not
  counted, so cluster time can fall behind real time after a restart but never runs ahead of it (each stamp is a
  reading of some primary's clock, and each replica only adds what its own clock measured since), apart from
  differences between the clocks' rates, which docs/design.md bounds for leases.

The injected clock is any monotonic nanosecond counter: `time.monotonic_ns` in the node, a per-replica virtual
clock (running at its own rate) in the simulator, the replica's ticks when none is given (scenario tests). Only
differences of one replica's own readings are ever used, so replicas' clocks need no common origin.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], int]


class ClusterTime:
    __slots__ = ("clock", "known", "known_at", "last")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.known = 0  # the largest cluster time learned (a stamp) ...
        self.known_at = clock()  # ... and our clock's reading when we learned it
        self.last = 0  # the largest stamp we issued or learned: the next stamp is after it

    def now(self) -> int:
        """Our cluster clock: never below any stamp we learned or issued."""
        return max(self.known + (self.clock() - self.known_at), self.last)

    def learn(self, timestamp: int) -> None:
        """A stamp of a log we hold (received, installed, restored): a newer one than any we knew becomes the
        base our clock continues from — even if our own estimate had run past it. Keeping the larger estimate
        instead would let a backup whose clock runs fast drift ahead of the primary's stamps by the rate
        difference times its uptime, and jump cluster time forward by that much when it becomes primary.
        Stamps still never go backwards: `last` bounds every stamp from below."""
        if timestamp > self.last:
            self.last = timestamp
            self.known, self.known_at = timestamp, self.clock()

    def stamp(self) -> int:
        """The timestamp of an entry the primary appends now: after every stamp before it."""
        timestamp = self.known + (self.clock() - self.known_at)
        if timestamp <= self.last:
            timestamp = self.last + 1
        self.last = timestamp
        return timestamp
