"""The faults of a chaos run (Jepsen's "nemeses"): each one starts on a running `ChaosCluster` and returns how
to undo it.

Theory of operation
-------------------
A nemesis is a function of a `Target` (the cluster, its network, the seeded PRNG, the current primary) that
makes one fault and returns a `Fault`: what it did, to whom, and `heal()`. Which replica it hits is drawn from
the seed; "the primary" is whoever answers as primary when the fault starts. `NEMESES` lists them all with the
smallest cluster each makes sense on; `zvsr.chaos.schedule` draws from it.

Network faults come in two layers. The kernel's (`zvsr.chaos.netns`): a link down (a replica cut off from
everyone, the proxy included), neighbour entries pointing at a dead MAC (replicas cut off from each other while
the proxy reaches all of them: a primary cut off from its backups, majority/minority splits, a bridge where one
replica sees both halves), htb rate limits (slow links). The relays' (`zvsr.chaos.relay`), at the message level:
one-way loss (a replica that can send but not receive, and the reverse — over TCP the kernel cannot keep one
direction of a connection alive without the other), delay, duplication and reordering of messages between
replicas. Process faults: kill -9 and a restart from disk, SIGSTOP/SIGCONT, a wiped data directory restarted
without ``--init`` (Recovery), and a kill of the primary while a backup is cut off.

Recovery is measured from the heal — or, for a kill or a wipe, from the moment the process died: the time until
the cluster acknowledges a write again (`Fault.measure_from_start`). A fault that cuts off one replica and
leaves the rest whole (`Fault.alone`) must not make the majority change view when it heals: the driver heals it
only once the rest are normal in one view (with a new primary of their own when they had to replace it), so a
view change the fault itself caused is not taken for one the heal caused.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from zvsr.chaos.cluster import ChaosCluster
from zvsr.chaos.netns import Network
from zvsr.chaos.relay import Policy

SLOW_LINK_KBIT = (30, 100, 1000)  # rates a slow link is drawn from (the storm was at 30 kbit/s)
DELAYS_MS = ((5, 50), (50, 200), (150, 400))  # message delay ranges, drawn per fault
DUPLICATE_REORDER = 0.2  # probability of each, per message, in `duplicate-reorder`


@dataclass
class Target:
    cluster: ChaosCluster
    network: Network
    rng: random.Random
    primary: int

    @property
    def replicas(self) -> list[int]:
        return list(range(self.network.replicas))

    def backup(self) -> int:
        return self.rng.choice([i for i in self.replicas if i != self.primary])

    def any_replica(self) -> int:
        return self.rng.choice(self.replicas)


@dataclass
class Fault:
    kind: str
    target: str  # who, as the report prints it: "r2", "r0 | r1 r2"
    heal: Callable[[], None]
    measure_from_start: bool = False
    # The one replica a fault cuts off while the rest stay whole (None: not such a fault), and whether the rest
    # must replace it before the heal (it was their primary and it can no longer lead them): healing such a
    # fault must not make them change view.
    alone: int | None = None
    replaced: bool = False
    details: dict[str, object] = field(default_factory=dict)


Nemesis = Callable[[Target], Fault]


def _cut(network: Network, side_a: list[int], side_b: list[int]) -> None:
    for a in side_a:
        for b in side_b:
            network.block(a, b)
            network.block(b, a)


def _names(indexes: list[int]) -> str:
    return " ".join(f"r{i}" for i in sorted(indexes))


# --- the kernel's faults ---------------------------------------------------------------------------------


def _isolate(target: Target, index: int, kind: str) -> Fault:
    target.network.set_link(index, up=False)
    heal = partial(target.network.set_link, index, up=True)
    return Fault(kind, f"r{index}", heal, alone=index, replaced=index == target.primary)


def isolate_backup(target: Target) -> Fault:
    """A backup's link goes down: it reaches nobody, not even the proxy."""
    return _isolate(target, target.backup(), "isolate-backup")


def isolate_primary(target: Target) -> Fault:
    return _isolate(target, target.primary, "isolate-primary")


def primary_cut(target: Target) -> Fault:
    """The primary cannot reach its backups nor they it, but the proxy still reaches everyone."""
    primary = target.primary
    _cut(target.network, [primary], [i for i in target.replicas if i != primary])
    return Fault("primary-cut", f"r{primary}", target.network.unblock_all, alone=primary, replaced=True)


def split(target: Target) -> Fault:
    """Majority and minority cut apart (the proxy reaches both): with 3 replicas a minority of one."""
    replicas = target.replicas
    target.rng.shuffle(replicas)
    minority, majority = replicas[: len(replicas) // 2], replicas[len(replicas) // 2 :]
    _cut(target.network, minority, majority)
    fault = Fault("split", f"{_names(minority)} | {_names(majority)}", target.network.unblock_all)
    if len(minority) == 1:
        fault.alone, fault.replaced = minority[0], minority[0] == target.primary
    return fault


def bridge(target: Target) -> Fault:
    """Two halves that cannot reach each other, and one replica that reaches both."""
    replicas = target.replicas
    target.rng.shuffle(replicas)
    middle, rest = replicas[0], replicas[1:]
    half = len(rest) // 2
    _cut(target.network, rest[:half], rest[half:])
    return Fault(
        "bridge", f"{_names(rest[:half])} | {_names(rest[half:])} via r{middle}", target.network.unblock_all
    )


def slow_link(target: Target) -> Fault:
    """A replica's link (both ways) limited to a few kbit/s: its messages are late, and big ones very late."""
    index = target.any_replica()
    kbit = target.rng.choice(SLOW_LINK_KBIT)
    target.network.shape(index, kbit=kbit)
    # A slow primary may keep its place or be replaced, depending on the rate and the load: not required.
    fault = Fault("slow-link", f"r{index} {kbit} kbit/s", target.network.unshape_all, alone=index)
    fault.details["kbit"] = kbit
    return fault


# --- the relays' faults (messages between replicas) ------------------------------------------------------


def _between(target: Target, source: int, to: int, policy: Policy) -> None:
    """Messages from replica `source` to replica `to` get `policy`: its peer messages at `to`'s relay, its
    heartbeats (published by `source`, subscribed to by `to`) at `source`'s."""
    network, cluster = target.network, target.cluster
    cluster.relay(to).set_policy(network.address(source), to_replica=policy)
    cluster.relay(source).set_policy(network.address(to), from_replica=policy)


def _clear_relays(target: Target) -> Callable[[], None]:
    def heal() -> None:
        for index in target.replicas:
            target.cluster.relay(index).clear()

    return heal


def deaf(target: Target) -> Fault:
    """A replica that can send but not receive: every message to it is lost; its own go out."""
    index = target.any_replica()
    for other in target.replicas:
        if other != index:
            _between(target, other, index, Policy(drop=True))
    # A primary that hears no PrepareOk goes quiet (check-quorum), and its backups replace it.
    replaced = index == target.primary
    return Fault("send-only", f"r{index}", _clear_relays(target), alone=index, replaced=replaced)


def mute(target: Target) -> Fault:
    """A replica that can receive but not send: every message from it is lost."""
    index = target.any_replica()
    for other in target.replicas:
        if other != index:
            _between(target, index, other, Policy(drop=True))
    return Fault("receive-only", f"r{index}", _clear_relays(target), alone=index, replaced=index == target.primary)


def delay(target: Target) -> Fault:
    """Every message between replicas is held for a delay drawn from a range (in order)."""
    low, high = target.rng.choice(DELAYS_MS)
    for source in target.replicas:
        for to in target.replicas:
            if source != to:
                _between(target, source, to, Policy(delay_ms=(low, high)))
    return Fault("delay", f"all links {low}-{high} ms", _clear_relays(target))


def duplicate_reorder(target: Target) -> Fault:
    """Messages between replicas are sent twice, and overtake each other, each with some probability."""
    policy = Policy(delay_ms=(0, 5), duplicate=DUPLICATE_REORDER, reorder=DUPLICATE_REORDER)
    for source in target.replicas:
        for to in target.replicas:
            if source != to:
                _between(target, source, to, policy)
    return Fault("duplicate-reorder", f"all links p={DUPLICATE_REORDER}", _clear_relays(target))


# --- process faults ------------------------------------------------------------------------------------


def _primary_or_any(target: Target) -> int:
    return target.primary if target.rng.random() < 0.5 else target.any_replica()


def kill(target: Target) -> Fault:
    """kill -9, and a restart from its data directory when the fault heals."""
    index = _primary_or_any(target)
    target.cluster.kill(index)
    return Fault("kill", f"r{index}", lambda: target.cluster.start_node(index), measure_from_start=True)


def pause(target: Target) -> Fault:
    """SIGSTOP, SIGCONT when the fault heals: a replica frozen, its connections up."""
    index = _primary_or_any(target)
    target.cluster.pause(index)
    return Fault("pause", f"r{index}", lambda: target.cluster.resume(index))


def wipe(target: Target) -> Fault:
    """kill -9, its data directory emptied, and a restart without --init: it comes back through Recovery."""
    index = _primary_or_any(target)
    target.cluster.kill(index)
    target.cluster.wipe(index)
    return Fault("wipe", f"r{index}", lambda: target.cluster.start_node(index), measure_from_start=True)


def kill_while_cut_off(target: Target) -> Fault:
    """A backup's link goes down and the primary is killed: the rest must change view without the one, and
    both come back when the fault heals (with 3 replicas nothing can commit until then)."""
    primary, backup = target.primary, target.backup()
    target.network.set_link(backup, up=False)
    target.cluster.kill(primary)

    def heal() -> None:
        target.cluster.start_node(primary)
        target.network.set_link(backup, up=True)

    return Fault("kill-while-cut-off", f"kill r{primary}, cut r{backup}", heal)


# Every nemesis, with the smallest cluster it makes sense on.
NEMESES: dict[str, tuple[Nemesis, int]] = {
    "isolate-backup": (isolate_backup, 3),
    "isolate-primary": (isolate_primary, 3),
    "primary-cut": (primary_cut, 3),
    "split": (split, 3),
    "bridge": (bridge, 3),
    "send-only": (deaf, 3),
    "receive-only": (mute, 3),
    "slow-link": (slow_link, 3),
    "delay": (delay, 2),
    "duplicate-reorder": (duplicate_reorder, 2),
    "kill": (kill, 3),
    "pause": (pause, 3),
    "wipe": (wipe, 3),
    "kill-while-cut-off": (kill_while_cut_off, 3),
}
