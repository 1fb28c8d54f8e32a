"""The seeded order of faults of a chaos run: every nemesis that fits the cluster once, in an order drawn from
the seed, then more drawn at random until the run's duration is used up. The targets of each fault (which
replica, which side) are drawn from the same PRNG when it starts, so a seed names the whole plan; what the
processes do in between is not deterministic (real time, real sockets), so a seed replays the faults, not the
interleaving."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from zvsr.chaos.nemesis import NEMESES
from zvsr.constants import CHAOS_FAULT_S_MAX, CHAOS_FAULT_S_MIN


@dataclass(frozen=True)
class Step:
    kind: str
    fault_s: float  # how long the fault lasts before it heals


def kinds_for(replicas: int) -> list[str]:
    return [kind for kind, (_, smallest) in NEMESES.items() if replicas >= smallest]


def schedule(rng: random.Random, replicas: int, kinds: list[str] | None = None) -> Iterator[Step]:
    """Endless: the caller stops taking steps when its time is up (after the first round, which has every
    kind — of `kinds`, by default all that fit — once)."""
    kinds = kinds_for(replicas) if kinds is None else list(kinds)
    first = list(kinds)
    rng.shuffle(first)
    for kind in first:
        yield Step(kind, rng.uniform(CHAOS_FAULT_S_MIN, CHAOS_FAULT_S_MAX))
    while True:
        yield Step(rng.choice(kinds), rng.uniform(CHAOS_FAULT_S_MIN, CHAOS_FAULT_S_MAX))
