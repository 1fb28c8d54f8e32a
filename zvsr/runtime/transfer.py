"""`zvsr member transfer N`: hand the primary role to replica N for planned maintenance (issue 14).

Theory of operation
-------------------
Restarting the primary costs a failover: the backups notice its silence only after the primary timeout, then run
a view change. Planned maintenance avoids that wait: the primary itself starts the view change to the next view
replica N leads (`Replica.transfer_primary`), so the backups take part at once and N leads within a few round
trips; the old primary is then a backup and may be restarted like any other.

Replica side (`answer`): the node recognises the transfer query (`zvsr.wire.admin`, types 38 → 39) on its client
port before decoding, between two core steps, and asks its core. Only the primary in normal status can hand the
role over; another replica answers ``not_primary`` naming the primary it believes in. The core's refusal comes
with its reason: ``behind`` when N has not acknowledged every committed op yet (under load it lags by the ops in
flight, so this passes by itself), ``refused`` otherwise (N is no other member, a reconfiguration is in
flight). The answer
``{"view": v}`` means only that the view change to v started: the protocol completes it (or, if N cannot lead
after all, the view after it takes over) as any view change.

Operator side (`transfer`): read the configuration and its primary (`zvsr.runtime.reconfigure.current`), send
it the query (again every `TRANSFER_POLL_MS` while the answer is ``behind``), then ask N's status as often until
N reports itself primary in normal status in view v or later, within the timeout. The elapsed time is from the
first query to that status answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import zmq

from zvsr.constants import STATUS_TIMEOUT_MS, TRANSFER_ANSWER_BYTES_MAX, TRANSFER_POLL_MS
from zvsr.protocol.replica import Replica, Status
from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.runtime.members import member_addresses
from zvsr.runtime.reconfigure import ReconfigurationError, current
from zvsr.runtime.status import ask, query, replica_curve
from zvsr.wire import admin
from zvsr.wire.errors import DecodeError


class TransferError(ReconfigurationError):
    """The role was not handed over (refused, no primary, no answer, or not seen in time); the message says why."""


class TransferRefused(TransferError):
    """The primary (or the replica asked) refused; `code` is the answer's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Transfer:
    """The primary role moved from `old_primary` in `old_view` to `new_primary` in `new_view`, in `elapsed_s`."""

    old_primary: int
    new_primary: int
    old_view: int
    new_view: int
    elapsed_s: float


def answer(payload: bytes, core: Replica) -> tuple[bytes, str] | None:
    """The answer to a transfer query and the outcome to count it under; None if `payload` is not one."""
    try:
        to = admin.decode_transfer_query(payload)
    except DecodeError as error:
        return admin.encode_transfer_error(admin.TRANSFER_BAD_REQUEST, str(error)), admin.TRANSFER_BAD_REQUEST
    if to is None:
        return None
    if core.status is not Status.NORMAL or not core.is_primary():
        believed = core.membership.primary(core.view_number)
        message = (
            f"replica {core.replica} is not the primary in normal status (status {core.status.value}, view "
            f"{core.view_number}); it believes replica {believed} leads view {core.view_number}: ask that one"
        )
        return admin.encode_transfer_error(admin.TRANSFER_NOT_PRIMARY, message), admin.TRANSFER_NOT_PRIMARY
    reason = core.transfer_primary(to)
    if reason is not None:
        # The one refusal that passes by itself: `to` acknowledges the ops in flight a moment later.
        behind = to in core.membership and core.pipeline.prepare_ok.get(to, 0) < core.commit_number
        code = admin.TRANSFER_BEHIND if behind and to != core.replica else admin.TRANSFER_REFUSED
        return admin.encode_transfer_error(code, reason), code
    return admin.encode_transfer_answer(core.view_number), "ok"


def transfer(config: ClusterConfig, to: int, *, timeout_ms: int) -> Transfer:
    """Hand the primary role to replica `to` and wait until it leads; TransferError if it did not in time."""
    deadline = time.monotonic() + timeout_ms / 1000
    now = current(config, timeout_ms=min(timeout_ms, STATUS_TIMEOUT_MS))
    membership = now.membership
    if to not in membership:
        members = ", ".join(map(str, membership.ids))
        raise TransferError(f"replica {to} is not a member of epoch {membership.epoch} (members {members})")
    if now.primary is None:
        raise TransferError("no replica reports itself primary in normal status: try again once one does")
    addresses = member_addresses(membership)
    if now.primary not in addresses or to not in addresses:
        raise TransferError(
            f"no client endpoint known for replica {now.primary if now.primary not in addresses else to}"
        )
    old_view = next(
        e["view"] for e in now.report["replicas"] if e.get("replica") == now.primary and e.get("reachable")
    )
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        started = time.monotonic()
        view = _ask_primary(config, now.primary, addresses[now.primary].client, to, deadline, context)
        endpoint, curve = addresses[to].client, replica_curve(config, to)
        while (left := deadline - time.monotonic()) > 0:
            status = query(
                endpoint, timeout_ms=max(1, min(int(left * 1000), STATUS_TIMEOUT_MS)), context=context, curve=curve
            )
            if (
                status is not None
                and status.get("status") == "normal"
                and status.get("role") == "primary"
                and isinstance(status.get("view"), int)
                and status["view"] >= view
            ):
                return Transfer(now.primary, to, old_view, status["view"], time.monotonic() - started)
            time.sleep(TRANSFER_POLL_MS / 1000)  # polling a remote status: there is no event to wait for
        raise TransferError(
            f"replica {to} did not report itself primary of view {view} or later within {timeout_ms} ms "
            "(the view change may still complete, or a later view took over: `zvsr status` shows who leads)"
        )
    finally:
        context.destroy(linger=0)


def _ask_primary(
    config: ClusterConfig,
    primary: int,
    endpoint: str,
    to: int,
    deadline: float,
    context: zmq.Context[zmq.Socket[bytes]],
) -> int:
    """Send the transfer query to the primary until it starts the view change (the view it goes to); asked again
    every `TRANSFER_POLL_MS` while `to` is behind (under load it lags by the ops in flight), until `deadline`."""
    payload, curve = admin.encode_transfer_query(to), replica_curve(config, primary)
    while True:
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        raw = ask(
            endpoint,
            payload,
            admin.TYPE_TRANSFER_ANSWER,
            size_max=TRANSFER_ANSWER_BYTES_MAX,
            timeout_ms=min(left_ms, STATUS_TIMEOUT_MS),
            context=context,
            curve=curve,
        )
        if raw is None:
            raise TransferError(f"replica {primary} (the primary) did not answer the transfer query")
        try:
            answered = admin.read_transfer_answer(raw)
        except DecodeError as error:
            raise TransferError(f"unreadable transfer answer from replica {primary}: {error}") from error
        if answered.error is None:
            return answered.view
        if answered.error != admin.TRANSFER_BEHIND or time.monotonic() + TRANSFER_POLL_MS / 1000 >= deadline:
            raise TransferRefused(answered.error, answered.message)
        time.sleep(TRANSFER_POLL_MS / 1000)  # `to` acknowledges the ops in flight: no event of ours to wait for
