"""The replica node over real ZeroMQ sockets on 127.0.0.1: three nodes in this process, one thread each.

Scenarios: a client gets its reply from the primary, a redirect from a backup and the cached reply for a
repeated request; the primary stops and a backup serves view 1; a restarted replica recovers (§4.3) and catches
up; malformed input on every bound socket is counted and changes nothing; a plain REQ socket works. Waiting is
always for a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgpack  # type: ignore[import-untyped]
import pytest
import zmq
from local_cluster import LocalCluster, make_config, operation

from zvsr import constants
from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    Commit,
    Error,
    LogEntry,
    Prepare,
    PrepareOk,
    Redirect,
    Reply,
    Request,
)
from zvsr.runtime.data_dir import MARKER_NAME, StorageError
from zvsr.runtime.node import NodeStartError, ReplicaNode, routing_id
from zvsr.runtime.processes import wait_for
from zvsr.wire import admin, decode_client_reply, encode

T = TypeVar("T")


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster(make_config())
    try:
        yield local.start()
    finally:
        local.close()


def counters(cluster: LocalCluster, index: int) -> dict[str, int]:
    result: dict[str, int] = cluster.status(index)["counters"]
    return result


# --- normal operation ----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_dealer_client_gets_its_reply_from_the_primary(cluster: LocalCluster) -> None:
    put = cluster.call(0, Request(client_id=1, request_number=1, operation=operation("put", "a", value=7)))
    assert isinstance(put, Reply) and put.view == 0
    get = cluster.call(0, Request(client_id=1, request_number=2, operation=operation("get", "a")))
    assert isinstance(get, Reply) and msgpack.unpackb(get.result) == 7
    status = cluster.status(0)
    assert status["role"] == "primary" and status["commit_number"] >= 1  # the get needs no log entry (read_index)
    assert status["traffic"]["requests_in"] >= 2 and status["traffic"]["answers_out"] >= 2


@pytest.mark.timeout(30)
def test_a_backup_redirects_to_the_primary_of_its_view(cluster: LocalCluster) -> None:
    answer = cluster.call(2, Request(client_id=5, request_number=1, operation=operation("get", "x")))
    assert answer == Redirect(view=0, primary=0, client_id=5, request_number=1)


@pytest.mark.timeout(30)
def test_the_same_request_twice_gets_the_cached_reply(cluster: LocalCluster) -> None:
    incr = Request(client_id=9, request_number=1, operation=operation("incr", "n"))
    first = cluster.call(0, incr)
    again = cluster.call(0, incr)
    assert isinstance(first, Reply) and msgpack.unpackb(first.result) == 1
    assert again == first  # executed once: the counter did not move to 2
    assert counters(cluster, 0).get("on_request: cached reply", 0) >= 1


@pytest.mark.timeout(30)
def test_a_plain_req_socket_gets_answers(cluster: LocalCluster) -> None:
    req = cluster.socket(zmq.REQ, cluster.config.replicas[0].client)
    req.send(encode(Request(client_id=3, request_number=1, operation=operation("put", "k", value="v"))))
    assert req.poll(5000), "the primary did not answer a REQ socket"
    answer = decode_client_reply(req.recv())  # a REQ accepts only [""][payload]: the envelope worked
    assert isinstance(answer, Reply)
    req.send(admin.encode_status_query())
    assert req.poll(5000)
    assert admin.decode_status(req.recv())["replica"] == 0


@pytest.mark.timeout(30)
def test_the_status_query_describes_the_replica(cluster: LocalCluster) -> None:
    cluster.call(0, Request(client_id=1, request_number=1, operation=operation("put", "a", value=1)))
    # A backup hears from its primary (Prepare, Commit); backups say nothing to each other in normal operation.
    # Wait for the op too: a heartbeat (Commit) can reach the backup before the Prepare does.
    status = cluster.wait_status(
        1, "heard the primary's op", lambda s: s["last_heard_ms"][0] is not None and s["op_number"] >= 1
    )
    assert status["replica"] == 1 and status["status"] == "normal" and status["role"] == "backup"
    assert status["view"] == 0 and status["primary"] == 0 and status["last_normal_view"] == 0
    assert status["state_transfer"] is False and status["start"] == "first_start"
    assert set(status["last_heard_ms"]) == {0, 2}
    assert status["log_first_op"] == 1 and status["log_last_op"] == status["op_number"] >= 1
    assert status["snapshot_op"] == 0
    # The backup learned the stamp of the op it holds: its cluster clock is at or after it.
    assert isinstance(status["cluster_time_ns"], int) and status["cluster_time_ns"] >= 1
    assert status["data_dir_bytes"] > 0 and status["fsync"] == "always"  # marker and superblock are written
    assert status["endpoints"]["client"] == cluster.config.replicas[1].client
    assert status["uptime_s"] > 0 and isinstance(status["counters"], dict)
    raw = cluster.client(1)  # a raw DEALER, no delimiter: the answer comes back the same way
    raw.send(admin.encode_status_query())
    assert raw.poll(5000)
    (frame,) = raw.recv_multipart()
    assert admin.decode_status(frame)["replica"] == 1


# --- failures ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(40)
def test_when_the_primary_stops_a_backup_becomes_primary_of_view_1(cluster: LocalCluster) -> None:
    first = cluster.call(0, Request(client_id=1, request_number=1, operation=operation("put", "a", value=1)))
    assert isinstance(first, Reply)
    cluster.stop(0)

    status = cluster.wait_status(1, "primary of view 1", lambda s: s["status"] == "normal" and s["view"] >= 1)
    assert (status["view"], status["role"]) == (1, "primary")
    read = cluster.call(1, Request(client_id=1, request_number=2, operation=operation("get", "a")))
    assert isinstance(read, Reply) and read.view == 1 and msgpack.unpackb(read.result) == 1  # nothing lost
    redirect = cluster.call(2, Request(client_id=2, request_number=1, operation=operation("get", "a")))
    assert redirect == Redirect(view=1, primary=1, client_id=2, request_number=1)


@pytest.mark.timeout(40)
@pytest.mark.parametrize("disk", ["kept", "lost"])
def test_a_restarted_replica_comes_back_and_catches_up(tmp_path: Path, disk: str) -> None:
    """With its disk it restarts from the superblock and the log; with the disk lost (marker only) it runs the
    Recovery protocol (§4.3). Either way it catches up and takes part again."""
    local = LocalCluster(make_config(tmp_path))
    try:
        local.start()
        for number in range(1, 4):
            local.call(0, Request(client_id=1, request_number=number, operation=operation("incr", "n")))
        assert (tmp_path / "replica-2" / MARKER_NAME).exists()
        local.stop(2)
        if disk == "lost":
            for name in ("superblock.a", "superblock.b", "wal.log"):
                (tmp_path / "replica-2" / name).unlink(missing_ok=True)
        for number in range(4, 7):  # progress while r2 is down: a majority is enough
            local.call(0, Request(client_id=1, request_number=number, operation=operation("incr", "n")))

        local.start(2)
        primary = local.status(0)
        back = local.wait_status(
            2, "caught up", lambda s: s["status"] == "normal" and s["op_number"] == primary["op_number"]
        )
        assert back["start"] == ("restart_from_disk" if disk == "kept" else "recovery")
        assert back["commit_number"] <= back["op_number"]
        assert back["view"] == primary["view"] and back["role"] == "backup"
        # And it takes part again: a new operation reaches its log.
        local.call(0, Request(client_id=1, request_number=7, operation=operation("incr", "n")))
        local.wait_status(2, "op 7 in its log", lambda s: s["op_number"] == 7)
    finally:
        local.close()


# --- bad input -----------------------------------------------------------------------------------------------


def _peer_message(**fields: int) -> bytes:
    header = {"cluster": 1, "epoch": 0, "view": 0, "replica": 2, **fields}
    return encode(PrepareOk(op_number=0, **header))


@pytest.mark.timeout(40)
def test_bad_input_on_the_peer_port_is_counted_and_changes_nothing(cluster: LocalCluster) -> None:
    target = cluster.config.replicas[1].peer
    impostor = cluster.socket(zmq.DEALER, target, ROUTING_ID=routing_id(2))
    too_many = tuple(
        LogEntry(view=0, op_number=n, client_id=1, request_number=n, operation=b"", timestamp=n)
        for n in range(1, constants.PREPARE_ENTRIES_MAX + 2)
    )
    oversized = encode(
        Prepare(cluster=1, epoch=0, view=0, replica=2, op_number=len(too_many), commit_number=0, entries=too_many)
    )
    impostor.send(b"\xc1")  # never valid msgpack
    impostor.send(_peer_message()[:-2])  # truncated
    impostor.send(oversized)  # more entries than a Prepare may carry
    impostor.send(msgpack.packb({"type": 99}))  # unknown type
    impostor.send(encode(Request(client_id=1, request_number=1, operation=b"")))  # a client kind on this port
    impostor.send_multipart([b"one", b"two"])  # wrong frame count
    impostor.send(_peer_message(replica=0))  # identity r2 claims to be replica 0
    impostor.send(_peer_message(cluster=77))  # another cluster: the core counts it
    stranger = cluster.socket(zmq.DEALER, target, ROUTING_ID=b"zz")
    stranger.send(_peer_message())  # an identity that is no peer
    anonymous = cluster.socket(zmq.DEALER, target)
    anonymous.send(_peer_message())  # no routing id at all: libzmq makes one up

    expected = {
        "peer: decode error (not_msgpack)": 2,
        "peer: decode error (too_large)": 1,
        "peer: decode error (unknown_type)": 1,
        "peer: decode error (unexpected_type)": 1,
        "peer: wrong frame count": 1,
        "peer: wrong identity": 1,
        "on_message: other cluster": 1,
        "peer: unknown identity": 2,
    }

    def all_counted() -> bool:
        seen = counters(cluster, 1)
        return all(seen.get(reason, 0) >= count for reason, count in expected.items())

    wait_for(all_counted, what="every bad peer message counted")
    impostor.close(linger=0)  # give r2 its routing id back (ROUTER_HANDOVER)
    answer = cluster.call(0, Request(client_id=4, request_number=1, operation=operation("put", "b", value=2)))
    assert isinstance(answer, Reply)
    cluster.wait_status(1, "op 1 in its log", lambda s: s["status"] == "normal" and s["op_number"] >= 1)


@pytest.mark.timeout(90)
def test_connections_that_take_a_live_replicas_routing_id_cost_messages_lose_nothing_and_are_counted(
    cluster: LocalCluster,
) -> None:
    """Issue 17 part 3. ROUTER_HANDOVER (ARCHITECTURE §4: a restarted replica takes its id back) lets any
    connection that names itself r2 take replica 2's place on primary 0's peer port — a misconfigured twin, an
    impostor. For 5 s a new one does so every 0.1 s, each sending a frame that is not msgpack and a PrepareOk
    of another cluster. Replica 2's own messages to the primary vanish while it is displaced (until its ZMTP
    heartbeat times out and it reconnects); the primary goes on committing with replica 1: every write is
    acknowledged exactly once and read back, every impostor frame is dropped and counted, and once the
    impostors stop, replica 2 acknowledges the primary again and holds every op."""
    primary_peer = cluster.config.replicas[0].peer
    before = counters(cluster, 0)
    impostors = 0
    acknowledged: dict[str, int] = {}
    deadline = time.monotonic() + 5.0
    number = 0
    displaced = 0  # how far behind the primary's op_number replica 2's acknowledgements got
    while time.monotonic() < deadline:
        impostor = cluster.socket(zmq.DEALER, primary_peer, ROUTING_ID=routing_id(2))
        impostor.send(b"\xc1")
        impostor.send(_peer_message(cluster=77))
        impostors += 1
        number += 1
        put = operation("put", f"k{number}", value=number)
        answer = cluster.call(0, Request(client_id=9, request_number=number, operation=put))
        assert isinstance(answer, Reply), answer
        acknowledged[f"k{number}"] = number
        core = cluster.nodes[0][0].core  # read from this thread: a snapshot is enough
        displaced = max(displaced, core.op_number - core.pipeline.prepare_ok.get(2, 0))
        time.sleep(0.1)  # the impostors' pace, not a synchronisation
        impostor.close(linger=0)
    assert number > 20, f"only {number} writes acknowledged in 5 s while the impostors came"
    assert displaced >= 10, f"replica 2's acknowledgements were never more than {displaced} ops behind"

    def counted() -> bool:
        now = counters(cluster, 0)
        grew = {reason: now.get(reason, 0) - before.get(reason, 0) for reason in now}
        return (
            grew.get("peer: decode error (not_msgpack)", 0) >= impostors
            and grew.get("on_message: other cluster", 0) >= impostors
        )

    wait_for(counted, what="every impostor frame dropped and counted")
    primary = cluster.status(0)
    assert primary["status"] == "normal" and primary["view"] == 0, "no view change"
    cluster.wait_status(2, "every op, acknowledged", lambda s: s["commit_number"] == primary["commit_number"])
    for key, value in acknowledged.items():
        number += 1
        read = cluster.call(0, Request(client_id=9, request_number=number, operation=operation("get", key)))
        assert isinstance(read, Reply) and msgpack.unpackb(read.result) == value, key


@pytest.mark.timeout(40)
def test_bad_input_on_the_client_port_gets_bad_request_and_changes_nothing(cluster: LocalCluster) -> None:
    s = cluster.client(0)

    def ask(*frames: bytes) -> Any:
        s.send_multipart(list(frames))
        assert s.poll(5000), f"no answer to {frames!r}"
        answer = s.recv_multipart()
        assert len(answer) == len(frames)  # the same shape back: delimiter or not
        return msgpack.unpackb(answer[-1], raw=False)

    bare = {"type": 23, "code": ERROR_BAD_REQUEST}
    garbage = ask(b"\xc1")
    assert {k: garbage[k] for k in ("type", "code")} == bare and set(garbage) == {"type", "code", "message"}
    assert ask(b"", msgpack.packb({"type": 99}))["code"] == ERROR_BAD_REQUEST
    assert ask(encode(Request(client_id=1, request_number=1, operation=b"x"))[:-1])["code"] == ERROR_BAD_REQUEST
    # Readable ids, unreadable request: a full Error naming it, which any client decodes.
    named = {"type": 20, "client_id": 8, "request_number": 3, "operation": "not bin"}
    answer = decode_client_reply(msgpack.packb(ask(msgpack.packb(named)), use_bin_type=True))
    assert isinstance(answer, Error) and (answer.client_id, answer.request_number) == (8, 3)
    assert answer.code == ERROR_BAD_REQUEST and "wrong_type" in answer.message
    big = encode(Request(client_id=8, request_number=4, operation=b"x" * (constants.OPERATION_BYTES_MAX + 1)))
    assert ask(big)["code"] == ERROR_BAD_REQUEST

    s.send_multipart([b"hop", b"not a delimiter", b"payload"])  # neither envelope shape: dropped, counted
    huge = cluster.client(0)
    huge.send(b"\x00" * (constants.CLIENT_MESSAGE_BYTES_MAX + 1))  # libzmq drops the connection (MAXMSGSIZE)
    put = cluster.call(0, Request(client_id=8, request_number=1, operation=operation("put", "c", value=3)))
    assert isinstance(put, Reply)

    def envelope_counted() -> dict[str, int] | None:
        seen = counters(cluster, 0)
        return seen if seen.get("client: bad envelope (no empty delimiter before the payload)") else None

    seen = wait_for(envelope_counted, what="the bad envelope counted")
    assert seen["client: decode error (not_msgpack)"] >= 2
    assert seen["client: decode error (unknown_type)"] >= 1
    assert seen["client: decode error (wrong_type)"] >= 1
    assert seen["client: decode error (too_large)"] >= 1


@pytest.mark.timeout(40)
def test_bad_heartbeats_are_counted_and_changes_nothing() -> None:
    """Replica 2 is an impostor's PUB: r0 and r1 (a majority) run, and their SUBs read whatever it sends."""
    local = LocalCluster(make_config())
    try:
        local.start(0, 1)
        impostor = local.context.socket(zmq.PUB)
        impostor.setsockopt(zmq.LINGER, 0)
        impostor.bind(local.config.replicas[2].heartbeat)
        local._sockets.append(impostor)
        header = {"cluster": 1, "epoch": 0, "view": 0}
        wrong_sender = Commit(**header, replica=1, commit_number=0, op_number=0)  # r2's SUB, r1's Commit
        bad: list[tuple[str, bytes | list[bytes]]] = [
            ("heartbeat: decode error (not_msgpack)", b"\xc1"),
            ("heartbeat: decode error (unknown_type)", msgpack.packb({"type": 99})),
            ("heartbeat: not a Commit of that peer", encode(PrepareOk(**header, replica=2, op_number=0))),
            ("heartbeat: not a Commit of that peer", encode(wrong_sender)),
            # CONFLATE keeps single frames only: a multipart publication arrives as one of its frames.
            ("heartbeat: decode error (not_a_map)", [b"a", b"b"]),
        ]
        for reason, data in bad:
            before = counters(local, 0).get(reason, 0)

            def counted(reason: str = reason, data: bytes | list[bytes] = data, before: int = before) -> bool:
                # PUB/SUB drops until the subscription arrives (slow joiner), and CONFLATE keeps only the latest
                # message: publish one kind at a time until it is counted.
                impostor.send_multipart(data) if isinstance(data, list) else impostor.send(data)
                return counters(local, 0).get(reason, 0) > before

            wait_for(counted, what=reason)
        answer = local.call(0, Request(client_id=1, request_number=1, operation=operation("put", "a", value=1)))
        assert isinstance(answer, Reply)
    finally:
        local.close()


# --- start-up ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_a_data_dir_of_another_replica_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    ReplicaNode(config, 0, init=True).close()  # first start: writes replica-0/replica.json
    (tmp_path / "replica-0").rename(tmp_path / "replica-1")
    with pytest.raises(StorageError, match="belongs to replica 0"):
        ReplicaNode(config, 1)


@pytest.mark.timeout(20)
def test_an_endpoint_in_use_fails_the_start_and_writes_no_marker(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    squatter = context.socket(zmq.ROUTER)
    squatter.bind(config.replicas[0].client)
    try:
        with pytest.raises(NodeStartError, match="client endpoint"):
            ReplicaNode(config, 0, init=True)
        assert not (tmp_path / "replica-0" / MARKER_NAME).exists()  # it never ran: the next start is a first
    finally:
        squatter.close(linger=0)
        context.term()
    with ReplicaNode(config, 0, init=True) as node:
        assert node.status()["start"] == "first_start"
    with ReplicaNode(config, 0) as node:  # its superblock and log are there: back from disk
        status = node.status()
        # It was the primary of view 0: restarted, it leaves that view for the next (docs/design.md).
        assert (status["start"], status["status"], status["view"]) == ("restart_from_disk", "view_change", 1)
