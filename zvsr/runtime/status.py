"""`zvsr status`: ask every replica for its status on its client port and show one line per replica.

Each replica answers the status query (`{"type": 30}`, see `zvsr.wire.admin`) itself; a replica that does not
answer within the timeout is shown as unreachable. The replicas asked are the cluster file's, then the members
of the latest configuration any of them reports (VR Revisited §7: the file may predate a reconfiguration), so
a new member shows even before the file names it; below the table, the configuration: its epoch and members.
Lag is how far a replica's commit_number is behind the highest commit_number any replica reported. ``metrics``
is the replica's Prometheus URL, or None when it serves none (or is too old to say); ``endpoints`` names its
sockets, ``watch`` (the watch stream's PUB) None when it publishes none.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from zvsr.constants import STATUS_ANSWER_BYTES_MAX, STATUS_TIMEOUT_MS
from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.runtime.members import from_status, member_addresses
from zvsr.runtime.security import client_options
from zvsr.wire.admin import TYPE_STATUS_ANSWER, encode_status_query


def query(
    endpoint: str,
    *,
    timeout_ms: int,
    context: zmq.Context[zmq.Socket[bytes]],
    curve: Mapping[str, int | bytes] | None = None,
) -> dict[str, Any] | None:
    """The status answer of the replica (or proxy) at `endpoint`, None if none came within `timeout_ms`."""
    return ask(
        endpoint,
        encode_status_query(),
        TYPE_STATUS_ANSWER,
        size_max=STATUS_ANSWER_BYTES_MAX,
        timeout_ms=timeout_ms,
        context=context,
        curve=curve,
    )


def ask(
    endpoint: str,
    payload: bytes,
    answer_type: int,
    *,
    size_max: int,
    timeout_ms: int,
    context: zmq.Context[zmq.Socket[bytes]],
    curve: Mapping[str, int | bytes] | None = None,
) -> dict[str, Any] | None:
    """Send one admin query (`zvsr.wire.admin`) to a client port; the first answer of `answer_type` (a map, int
    keys allowed), None if none came within `timeout_ms`. Answers of at most `size_max` bytes are read."""
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, size_max)
    for name, value in (curve or {}).items():
        socket.setsockopt(getattr(zmq, name), value)
    try:
        socket.connect(endpoint)
        socket.send_multipart([b"", payload])
        deadline = time.monotonic() + timeout_ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            if not socket.poll(int(left * 1000) + 1):
                return None
            frames = socket.recv_multipart()
            try:
                answer = msgpack.unpackb(frames[-1], raw=False, strict_map_key=False)
            except (ValueError, msgpack.UnpackException):
                continue
            if isinstance(answer, dict) and answer.get("type") == answer_type:
                return answer
        return None
    finally:
        socket.close()


def replica_curve(config: ClusterConfig, replica: int) -> dict[str, int | bytes] | None:
    """The CurveZMQ client options for talking to `replica`'s client port, None without CurveZMQ."""
    keys, pair = config.keys(), config.client_pair()
    if keys is None or pair is None or replica >= len(keys.replicas):
        return None
    return client_options(pair, keys.replicas[replica])


def collect_status(config: ClusterConfig, *, timeout_ms: int = STATUS_TIMEOUT_MS) -> dict[str, Any]:
    """Every replica's status answer (or unreachable), the file's replicas first, then the members of the latest
    configuration reported that the file does not list; ``membership``: that configuration (None if nobody
    answered)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    entries: list[dict[str, Any]] = []
    asked: set[int] = set()
    latest: dict[str, Any] | None = None

    def ask(replica: int, endpoint: str) -> None:
        nonlocal latest
        asked.add(replica)
        answer = query(endpoint, timeout_ms=timeout_ms, context=context, curve=replica_curve(config, replica))
        entry: dict[str, Any] = {"replica": replica, "endpoint": endpoint, "reachable": answer is not None}
        if answer is not None:
            entry.update({k: v for k, v in answer.items() if k != "type"})
            entry.setdefault("metrics", None)
            membership = answer.get("membership")
            if isinstance(membership, dict) and isinstance(membership.get("epoch"), int):
                if latest is None or membership["epoch"] > latest["epoch"]:
                    latest = membership
        entries.append(entry)

    try:
        for replica, address in zip(config.ids, config.replicas, strict=True):
            ask(replica, address.client)
        configuration = None if latest is None else from_status({"membership": latest})
        if configuration is not None:
            for replica, address in member_addresses(configuration).items():
                if replica not in asked:
                    ask(replica, address.client)
    finally:
        context.term()
    commits = [e["commit_number"] for e in entries if isinstance(e.get("commit_number"), int)]
    highest = max(commits, default=0)
    for entry in entries:
        if isinstance(entry.get("commit_number"), int):
            entry["lag"] = highest - entry["commit_number"]
    return {"cluster": config.cluster_id, "replicas": entries, "membership": latest}


def format_status(report: dict[str, Any]) -> str:
    header = (
        f"{'replica':>7}  {'status':<13} {'epoch':>5} {'view':>5} {'role':<8} {'op':>8} {'commit':>8} {'lag':>6} "
        f"{'log':>15} {'disk':>9}  {'watch':<26} {'metrics':<34} last heard"
    )
    lines = [header]
    for entry in report["replicas"]:
        if not entry["reachable"]:
            lines.append(f"{entry['replica']:>7}  {'unreachable':<13} ({entry['endpoint']})")
            continue
        heard = entry.get("last_heard_ms") or {}
        watch = (entry.get("endpoints") or {}).get("watch")
        heard_text = " ".join(
            f"r{peer}:{'-' if age is None else f'{age}ms'}" for peer, age in sorted(heard.items(), key=str)
        )
        lines.append(
            f"{entry['replica']:>7}  {entry.get('status', '?'):<13} {entry.get('epoch', '?'):>5} "
            f"{entry.get('view', '?'):>5} "
            f"{entry.get('role', '?'):<8} {entry.get('op_number', '?'):>8} {entry.get('commit_number', '?'):>8} "
            f"{entry.get('lag', '?'):>6} {_log_range(entry):>15} {_size(entry.get('data_dir_bytes')):>9}  "
            f"{watch or '-':<26} {entry.get('metrics') or '-':<34} {heard_text}"
        )
    membership = report.get("membership")
    if isinstance(membership, dict):
        lines.append("")
        lines.append(format_membership(membership))
    return "\n".join(lines)


def format_membership(membership: dict[str, Any]) -> str:
    """The configuration of a status answer (`zvsr.runtime.members.describe`): epoch, members, endpoints."""
    members = membership.get("members") or []
    lines = [
        f"epoch {membership.get('epoch', '?')} (from op {membership.get('start_op', '?')}, view "
        f"{membership.get('start_view', '?')}): members {', '.join(str(m.get('id')) for m in members)}"
    ]
    for member in members:
        lines.append(
            f"  r{member.get('id')}: peer {member.get('peer', '?')}  heartbeat {member.get('heartbeat', '?')}  "
            f"client {member.get('client', '?')}" + (f"  watch {member['watch']}" if member.get("watch") else "")
        )
    return "\n".join(lines)


def _log_range(entry: dict[str, Any]) -> str:
    first, last = entry.get("log_first_op"), entry.get("log_last_op")
    return "-" if not isinstance(first, int) or not isinstance(last, int) or last == 0 else f"{first}..{last}"


def _size(value: Any) -> str:
    if not isinstance(value, int) or value < 0:
        return "?"
    size = float(value)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{value}B" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}GiB"
