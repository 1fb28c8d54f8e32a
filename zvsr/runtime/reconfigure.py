"""`zvsr member …`: read the replicas' configuration and change it (VR Revisited §7), as an operator would.

Theory of operation
-------------------
The configuration lives in the replicas (their log and snapshots), not in any file: `current` asks the
replicas of the cluster file for their status (`zvsr.runtime.status.collect_status`, which follows the members
the answers name) and takes the configuration of the highest epoch reported, exactly as encoded
(`zvsr.runtime.members.from_status`), and the replica that reports itself primary in it.

A change is planned from it (`plan_add`, `plan_remove`, `plan_replace`): the new members in order — the
current primary first (it holds every committed op, so the new epoch's first view, which its first member
leads, starts without a view change), then the other retained members as they were, then the new ones. A new
replica gets the next unused id (`highest_id + 1`; ids are never reused), or the one asked for. Members keep
their address bytes exactly, so the core's checks (an unchanged configuration, a reused id) see what the
operator meant. Refusals the plan can foresee (removing a non-member, an id used before, an endpoint a member
already has) are `ReconfigurationError`s before anything is sent.

`submit` sends the reconfiguration operation (`zvsr.protocol.membership.reconfiguration_operation`, for the
epoch read) as an ordinary request, through the proxy or straight to the primary: it commits like any op, and
its result is the new epoch. The core refuses a request for another epoch than the current one, a second
reconfiguration while one is in progress, and a malformed or unchanged configuration, with a clear message that
`submit` raises as `ReconfigurationRefused`. A timeout leaves the outcome unknown (`ReconfigurationTimeout`):
`zvsr member list` tells whether the epoch moved.

`write_config` writes the cluster file of a configuration: the settings of the file used, its first
configuration (``epoch``, ``initial_replicas``: every replica replays from there), and the members with their
``id`` and endpoints, for `zvsr proxy`, `kv`, `status` and new nodes to be pointed at.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import REPLICA_ID_MAX, REPLICAS_MAX
from zvsr.protocol.membership import Member, Membership, reconfiguration_operation
from zvsr.runtime.cluster_config import ClusterConfig, ReplicaAddress, to_toml
from zvsr.runtime.members import address_or_none, from_status, member, member_addresses
from zvsr.runtime.status import collect_status


class ReconfigurationError(Exception):
    """The change cannot be made as asked (or the cluster could not be read); the message says why."""


class Unreachable(ReconfigurationError):
    """No replica answered the status query."""


class ReconfigurationRefused(ReconfigurationError):
    """The cluster refused the reconfiguration; `code` is the wire error code, the message the core's reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ReconfigurationTimeout(ReconfigurationError):
    """No answer in time: the reconfiguration may or may not have happened."""


@dataclass(frozen=True, slots=True)
class Current:
    """The configuration the replicas report, the primary in it (None if none said so) and the status report."""

    membership: Membership
    primary: int | None
    report: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    current: Current
    members: tuple[Member, ...]
    added: dict[int, ReplicaAddress]
    removed: tuple[int, ...]

    @property
    def operation(self) -> bytes:
        return reconfiguration_operation(self.current.membership.epoch, self.members)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.members)


def current(config: ClusterConfig, *, timeout_ms: int) -> Current:
    report = collect_status(config, timeout_ms=timeout_ms)
    membership = None if report.get("membership") is None else from_status(report)
    if membership is None:
        raise Unreachable(f"no replica answered with its configuration within {timeout_ms} ms")
    primary = None
    best_view = -1
    for entry in report["replicas"]:
        if (
            entry.get("reachable")
            and entry.get("epoch") == membership.epoch
            and entry.get("status") == "normal"
            and entry.get("role") == "primary"
            and isinstance(entry.get("view"), int)
            and entry["view"] > best_view
            and entry.get("replica") in membership
        ):
            primary, best_view = entry["replica"], entry["view"]
    return Current(membership, primary, report)


def _retained(now: Current, leaving: tuple[int, ...] = ()) -> list[Member]:
    """The members that stay, the primary first, the others in their order."""
    kept = [m for m in now.membership.members if m.id not in leaving]
    kept.sort(key=lambda m: m.id != now.primary)  # stable: only the primary moves
    return kept


def _new_id(now: Current, requested: int | None) -> int:
    highest = now.membership.highest_id
    if requested is None:
        return highest + 1
    if not 0 <= requested <= REPLICA_ID_MAX:
        raise ReconfigurationError(f"replica id {requested} is out of range (0..{REPLICA_ID_MAX})")
    if requested <= highest:
        raise ReconfigurationError(
            f"replica id {requested} was used before (ids are never reused): a new replica needs an id > {highest}"
        )
    return requested


def _check_address(now: Current, address: ReplicaAddress) -> None:
    endpoints = {address.peer, address.heartbeat, address.client} | ({address.watch} if address.watch else set())
    for replica, known in member_addresses(now.membership).items():
        used = {known.peer, known.heartbeat, known.client} | ({known.watch} if known.watch else set())
        if endpoints & used:
            raise ReconfigurationError(f"replica {replica} uses {', '.join(sorted(endpoints & used))} already")


def _plan(now: Current, members: list[Member], added: dict[int, ReplicaAddress], removed: tuple[int, ...]) -> Plan:
    if not members:
        raise ReconfigurationError("a configuration needs at least one member")
    if len(members) > REPLICAS_MAX:
        raise ReconfigurationError(f"a configuration has at most {REPLICAS_MAX} members")
    return Plan(now, tuple(members), added, removed)


def plan_add(now: Current, address: ReplicaAddress, *, replica: int | None = None) -> Plan:
    _check_address(now, address)
    new = _new_id(now, replica)
    return _plan(now, [*_retained(now), member(new, address)], {new: address}, ())


def plan_remove(now: Current, replica: int) -> Plan:
    if replica not in now.membership:
        raise ReconfigurationError(
            f"replica {replica} is not a member of epoch {now.membership.epoch} "
            f"(members {', '.join(map(str, now.membership.ids))})"
        )
    return _plan(now, _retained(now, (replica,)), {}, (replica,))


def plan_replace(now: Current, replica: int, address: ReplicaAddress, *, new_id: int | None = None) -> Plan:
    removed = plan_remove(now, replica)
    _check_address(dataclasses.replace(now, membership=_without(now.membership, replica)), address)
    new = _new_id(now, new_id)
    return _plan(now, [*removed.members, member(new, address)], {new: address}, (replica,))


def _without(membership: Membership, replica: int) -> Membership:
    members = tuple(m for m in membership.members if m.id != replica) or membership.members
    return dataclasses.replace(membership, members=members)


def submit(config: ClusterConfig, plan: Plan, *, timeout_ms: int, direct: bool = False) -> int:
    """Send the plan's reconfiguration; the epoch it started. Through `config.proxy`, or with `direct` straight
    to the primary read (or the first member)."""
    from zvsr.client import BadRequest, Client, Timeout, ZvsrError, curve_for_proxy

    if direct:
        target = plan.current.primary if plan.current.primary is not None else plan.current.membership.ids[0]
        address = member_addresses(plan.current.membership).get(target)
        if address is None:
            raise ReconfigurationError(f"no client endpoint known for replica {target}")
        client = Client(replicas=[address.client], timeout_ms=timeout_ms)
    else:
        client = Client(config.proxy, timeout_ms=timeout_ms, curve=curve_for_proxy(config))
    try:
        with client:
            result = client.request(plan.operation)
    except Timeout as error:
        raise ReconfigurationTimeout(
            f"no answer within {timeout_ms} ms: the reconfiguration may or may not have happened "
            "(`zvsr member list` shows the epoch)"
        ) from error
    except BadRequest as error:
        raise ReconfigurationRefused(error.code, str(error)) from error
    except ZvsrError as error:
        raise ReconfigurationRefused(error.code, str(error)) from error
    try:
        answer = msgpack.unpackb(result, raw=False)
    except Exception as error:
        raise ReconfigurationError(f"unexpected answer {result!r:.80}") from error
    if not isinstance(answer, dict) or not isinstance(answer.get("epoch"), int):
        raise ReconfigurationError(f"unexpected answer {answer!r:.80}")
    epoch: int = answer["epoch"]
    return epoch


def config_of(config: ClusterConfig, membership: Membership) -> ClusterConfig:
    """`config` with `membership`'s members as its replicas (ids explicit), its first configuration kept."""
    ids, addresses = [], []
    for entry in membership.members:
        address = address_or_none(entry.address)
        if address is None:
            raise ReconfigurationError(f"replica {entry.id}'s address does not read: cannot write its endpoints")
        ids.append(entry.id)
        addresses.append(address)
    return dataclasses.replace(
        config,
        replicas=tuple(addresses),
        replica_ids=tuple(ids),
        initial_replicas=config.initial_count,
        metrics_ports=(),  # one per [[replica]] by position: a new member's is not known
    )


def write_config(config: ClusterConfig, membership: Membership, path: Path) -> ClusterConfig:
    written = config_of(config, membership)
    path.write_text(to_toml(written))
    return written
