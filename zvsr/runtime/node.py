"""The replica node: the protocol core (`zvsr.protocol.replica.Replica`) driven over ZeroMQ sockets.

Theory of operation
-------------------
One thread runs one sync `zmq.Poller` reactor (ARCHITECTURE §4; measured ≈3× naive `zmq.asyncio`). Each
wake-up does, in this order:

1. poll the readable sockets, with a timeout that ends at the next tick;
2. drain every readable socket with NOBLOCK — at most `NODE_DRAIN_MAX` messages each, so one busy socket cannot
   starve the others — decoding and validating each message and feeding it to the core (`on_message`,
   `on_request`); bad input is dropped and counted and never reaches the core;
3. run the ticks that are due by `time.monotonic()` (one every `config.tick_ms`); a loop that fell behind
   runs the missed ticks, but at most `NODE_TICKS_CATCH_UP_MAX` of them: time lost beyond that is dropped,
   which only delays timeouts (liveness), never hurries them;
4. take `replica.ready()` and execute it in the contract's order (`zvsr.protocol.ready`):
   `storage.persist(records)` → send the messages → send the client answers.

Taking one Ready per wake-up rather than per message is what batches: every request drained in step 2 goes out
in as few Prepares as the core's bounds allow. Nothing of a Ready leaves before `persist` returns.

Sockets (ARCHITECTURE §4, measured; options in `_open_sockets`):

=============  ==========  =================================  =============================================
socket         kind        endpoint                           carries
=============  ==========  =================================  =============================================
peer           ROUTER      bind own ``peer``                  every replica message from the peers' DEALERs
to peer j      DEALER      connect j's ``peer``               our messages to j; routing id ``b"r<own id>"``
heartbeat      PUB         bind own ``heartbeat``             the core's Commit broadcasts (heartbeats)
from peer j    SUB         connect j's ``heartbeat``          j's Commits (CONFLATE: only the latest counts)
client         ROUTER      bind own ``client``                Requests, status queries; answers back
watch          XPUB        bind own ``watch`` (optional)      executed ops, for watchers (`watch_publisher`)
=============  ==========  =================================  =============================================

Each DEALER's routing id is its replica id, so the identity frame on the peer ROUTER names the sender: a
message whose ``replica`` field disagrees, or from an identity that names no replica id, is dropped and counted
(the routing id is chosen by the peer, not authenticated: CurveZMQ will authenticate it).

Epochs (VR Revisited §7). "Peer j" is replica id j of the core's configuration, which changes by
reconfiguration: before each Ready is sent, if the configuration changed, DEALERs and SUBs are connected to new
members (at the endpoints their `Member.address` names, `zvsr.runtime.members`) and closed for departed ones.
A message to a replica outside it gets a DEALER on demand when its endpoints are known (the address book: the
cluster file, every configuration seen), else it is lost and counted. A new replica (`join`) has no peers
until a member's StartEpoch names them: its configuration's endpoints enter the book before the core answers.
A core that `stopped` (it left the configuration and handed over) ends `run()`; `left` says so. At start the
durable state's configuration wins over the file (a warning says when they differ), and a replica without
state asks the replicas it knows for the current configuration before it recovers (`_recovery_membership`).

The core's Commit to BROADCAST goes out once on the PUB; every other broadcast is encoded once and sent to every
member's DEALER. Every send is NOBLOCK; `zmq.Again` (queue full, or peer not connected: IMMEDIATE=1) and
EHOSTUNREACH (a client that is gone: ROUTER_MANDATORY=1) are message loss, which VR survives by its re-sends
(rule 11). A send never blocks and never raises out of the loop.

Client port: the REQ-compatible envelope (`zvsr.runtime.envelope`). The node remembers, for each client_id,
the envelope of its latest request (an LRU of `NODE_CLIENT_ROUTES_MAX`) to route the core's Reply / Redirect /
Error back in the same shape. A status query (`zvsr.wire.admin`) is answered at once from `status()`, a
backup query (`zvsr.runtime.backup_query`) with a chunk of the latest snapshot, the watch stream's snapshot and
history queries from the app (`watch_publisher`) and from the ops executed lately (`watch_history`).
Unreadable input gets a ``bad_request`` Error (see `zvsr.wire.admin` for its two shapes).

Start-up (`zvsr.runtime.data_dir`): a first start writes the data-dir marker and starts the core normally; a
restart (marker present) starts the core in Recovery (§4.3), which takes part in nothing until a quorum
answered. Logging (`zvsr.runtime.logs`): view changes, becoming primary or backup, recovery and state transfer
at INFO, detected by comparing (status, view, role, state transfer) after each wake-up; bad input at
rate-limited WARNING; the core's own lines at DEBUG. Nothing is logged per message or per operation at INFO.

Metrics (`zvsr.runtime.metrics`, when the node has a metrics port): the reactor publishes a sample of plain
values once per tick, and prometheus_client's exporter threads serve ``/metrics`` from the latest one, never
touching the core. Per request, only what the arrival-to-reply histogram needs: the arrival of each client's
latest request (a dict entry) and one bucket increment when the primary replies.

Threading: `ReplicaNode` binds its sockets (and its metrics listener) in the constructor (so a port in use
fails there) and is then used by exactly one thread at a time — the one in `run()`. `close()` after `run()`
returned. `status()` may be called from another thread while it runs, for a best-effort snapshot (the client
port's status query is the exact one).
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

import zmq

from zvsr import constants as c
from zvsr.apps import AnyApp, AppLoadError, MsgpackStateMachine, load_app
from zvsr.protocol.membership import Membership, MembershipError
from zvsr.protocol.membership import decode as decode_membership
from zvsr.protocol.messages import ERROR_BAD_REQUEST, ClientReply, Commit, Error, ReplicaMessage, StartEpoch
from zvsr.protocol.ready import BROADCAST, Ready
from zvsr.protocol.replica import Replica, Status
from zvsr.runtime import security
from zvsr.runtime.backup_query import BackupServer
from zvsr.runtime.cluster_config import ClusterConfig, ReplicaAddress
from zvsr.runtime.data_dir import START_DISK, START_FIRST, START_RECOVERY, Storage, StorageError
from zvsr.runtime.envelope import (
    NOBLOCK,
    ClientEnvelope,
    EnvelopeError,
    fast_send,
    parse_client_frames,
    recv_frames,
    recv_frames_with_user,
    send_answer,
)
from zvsr.runtime.logs import RateLimitedWarnings, ReplicaLogger, setup_logging
from zvsr.runtime.members import AddressBook, address_or_none, initial_membership
from zvsr.runtime.members import describe as describe_membership
from zvsr.runtime.members import from_status as membership_from_status
from zvsr.runtime.metrics import MetricsStartError, NodeMetrics, NodeSample, node_sample_counters
from zvsr.runtime.serving import run_until_stopped
from zvsr.runtime.status import query as status_query
from zvsr.runtime.transfer import answer as transfer_answer
from zvsr.runtime.watch_history import WatchHistory, history_answer
from zvsr.runtime.watch_publisher import WatchPublisher, snapshot_answer
from zvsr.storage.wal import WAL_NAME
from zvsr.wire import admin
from zvsr.wire.batch import batches, decode_request_batch, encode_reply_batch, is_request_batch
from zvsr.wire.codec import DecodeError, EncodeError, decode_replica_message, decode_request, encode

PEER_FRAMES: Final = 2  # [routing id][message] on the peer ROUTER
HEARTBEAT_FRAMES: Final = 1  # [message] on a SUB

Socket = zmq.Socket[bytes]
State = tuple[Status, int, bool, bool]  # (status, view, is primary, in state transfer): what INFO logs follow


class NodeStartError(Exception):
    """The node cannot start (an endpoint cannot be bound, say); the message says which and why."""


def routing_id(replica: int) -> bytes:
    """The routing id of replica `replica`'s DEALERs: what the peer ROUTERs see as the identity frame."""
    return b"r%d" % replica


class ReplicaNode:
    """One replica of `config`, index `replica`, as a ZeroMQ process (or thread). See the module docstring."""

    def __init__(
        self,
        config: ClusterConfig,
        replica: int,
        *,
        app: AnyApp | None = None,
        context: zmq.Context[Socket] | None = None,
        seed: int | None = None,
        init: bool = False,
        join: bool = False,
    ) -> None:
        """Replica id `replica` of `config`. `init`: the first start of one of a new cluster's first replicas;
        `join`: the first start of a replica added by a reconfiguration (it waits to be told of an epoch that
        includes it, then catches up). Either is ignored when the data dir already holds the replica's state."""
        if not 0 <= replica <= c.REPLICA_ID_MAX:
            raise ValueError(f"replica id {replica} is out of range (0..{c.REPLICA_ID_MAX})")
        self.config = config
        self.index = replica
        self._core: Replica | None = None
        self._log = ReplicaLogger(logging.getLogger("zvsr.node"), replica=replica, context=self._log_context)
        self._warnings = RateLimitedWarnings(self._log)
        # Loss towards a peer that is down or not yet connected is the protocol's ordinary weather, not bad input.
        self._losses = RateLimitedWarnings(self._log, level=logging.INFO)
        self._counters: dict[str, int] = {}
        self._bad_frames: dict[tuple[str, str], int] = {}  # (socket, reason) -> inbound messages dropped
        self._view_changes = 0  # times the view number went up since this process started
        self._metrics: NodeMetrics | None = None
        self._arrivals: dict[int, tuple[int, float]] | None = None  # the metrics' arrivals, None without metrics
        self._messages_in = self._messages_out = self._requests_in = self._answers_out = 0
        self._senders: dict[bytes, int] = {}  # routing id -> replica id, of peers heard from (bounded)
        self._last_heard: dict[int, float] = {}
        self._routes: dict[int, ClientEnvelope] = {}  # client_id -> envelope of its latest request (LRU order)
        self._batch_senders: dict[ClientEnvelope, None] = {}  # who sent RequestBatches: answered in ReplyBatches
        self._send_drop_reasons: dict[int, str] = {}
        self._closed = False
        self._running = False
        self.left = False  # the core stopped: this replica left the configuration and handed over
        # Where each replica id listens (zvsr.runtime.members): the file's entries, then every configuration the
        # core is in or is told of (StartEpoch). The sockets to the peers follow the core's configuration.
        self._book = AddressBook(config)
        self._membership: Membership | None = None  # the configuration the sockets were last set up for
        self._synced_epoch: int | None = None
        self._broadcast: tuple[int, ...] = ()  # the peers a BROADCAST goes to (members with a DEALER)

        machine = MsgpackStateMachine(load_app(config.app) if app is None else app)
        # The watch stream (zvsr.runtime.watch_publisher) publishes what each Ready executed; the snapshot query
        # reads the app between core steps.
        self._app = machine.app
        self._watch: WatchPublisher | None = None
        # The ops executed lately, for watchers' history queries (zvsr.runtime.watch_history): with the stream
        # (set up once this replica's own endpoints are known, below).
        self._history: WatchHistory | None = None
        self._backups = BackupServer(config.cluster_id)  # the backup query (zvsr.runtime.backup_query)
        self._storage = Storage.open(
            config.replica_data_dir(replica),
            cluster_id=config.cluster_id,
            replica=replica,
            replica_count=config.initial_count,
            epoch=config.epoch,
            fsync=config.fsync == "always",
            init=init or join,
        )
        self._own_context = context is None
        self._context: zmq.Context[Socket] = zmq.Context() if context is None else context
        self._sockets: list[Socket] = []
        self._dealers: dict[int, Socket] = {}
        self._dealer_endpoints: dict[int, str] = {}
        self._subscribers: dict[int, Socket] = {}
        self._peer_sends: dict[int, Callable[[bytes, int], Any]] = {}
        self._poller = zmq.Poller()
        self._drains: dict[Socket, Callable[[float], None]] = {}
        self._keys = None
        self._authenticating = False
        self.seed = int.from_bytes(os.urandom(8), "big") if seed is None else seed
        try:
            # CurveZMQ (zvsr.runtime.security): our key pair, and the keys of everyone who may connect.
            self._keys = config.keys()
            self._pair = None if self._keys is None else self._keys.replica_pair(replica)
            storage = self._storage
            joining = self._check_start(init=init, join=join)
            self._core = Replica(
                config=config.protocol_config(),
                replica=replica,
                state_machine=machine,
                prng=random.Random(self.seed),
                recovering=storage.recovering,
                durable=storage.durable,
                # The core formats its lines eagerly: attach it only when they would be written.
                logger=self._core_line if self._log.isEnabledFor(logging.DEBUG) else None,
                clock=time.monotonic_ns,  # cluster time advances with this host's monotonic clock
                membership=self._recovery_membership() if storage.recovering else initial_membership(config),
                joining=joining,
            )
            self.address = self._own_address()
            self._history = WatchHistory() if self.address.watch is not None else None
            if self._keys is not None:
                self._keys.start_authenticator(self._context)
                self._authenticating = True
            self._open_sockets()
            self._open_watch()
            self._open_metrics()
            self._sync_peers()
            self._storage.begin()  # a first start counts only once the sockets are ours (before any send)
        except BaseException:
            self._release()
            raise
        self._state = self._current_state()
        self._started = time.monotonic()
        self._next_tick = self._started
        if self._metrics is not None:
            self._publish_metrics(self._metrics)
        self._log_start()

    # --- identity and configuration -----------------------------------------------------------------------

    def _check_start(self, *, init: bool, join: bool) -> bool:
        """Refuse a start that cannot be right; whether the core starts as a new replica joining (`join` on a
        first start)."""
        storage, config, replica = self._storage, self.config, self.index
        if init and join:
            raise NodeStartError("--init and --join exclude each other: --init starts a NEW cluster's replicas")
        if storage.start == START_FIRST and not join and replica >= config.initial_count and not storage.temporary:
            raise NodeStartError(
                f"replica {replica} is not one of the cluster's first replicas (0..{config.initial_count - 1}): "
                "a replica added by a reconfiguration starts with --join"
            )
        if storage.start == START_FIRST and join:
            return True
        if join and storage.marker_found:
            self._log.info("--join ignored: the data dir holds this replica's state already (a restart)")
        return False

    def _recovery_membership(self) -> Membership:
        """The configuration a replica that lost its disk recovers in (§4.3 in an epoch of §7): the highest one
        the replicas it knows report (status query), else the file's first one; its peers then tell it of any
        later epoch (StartEpoch)."""
        first = initial_membership(self.config)
        if self._keys is not None:  # the node's key is no client key: it cannot ask, and reconfiguration is off
            return first
        others = [i for i in self.config.ids if i != self.index]
        if not others:
            return first
        best: Membership | None = None
        timeout_ms = max(100, c.NODE_RECOVERY_MEMBERSHIP_TIMEOUT_MS // len(others))
        for replica in others:
            address = self._book.get(replica)
            if address is None:
                continue
            answer = status_query(address.client, timeout_ms=timeout_ms, context=self._context)
            found = None if answer is None else membership_from_status(answer)
            if found is not None and (best is None or found.epoch > best.epoch):
                best = found
        chosen = first if best is None or best.epoch <= first.epoch else best
        if self.index not in chosen:
            source = "as no replica answered" if best is None else "as its peers report"
            raise NodeStartError(
                f"replica {self.index} has no state and is not a member of epoch {chosen.epoch} (replicas "
                f"{', '.join(map(str, chosen.ids))}, {source}): there is nothing for it to recover; a replica "
                "added by a reconfiguration starts with --join"
            )
        if chosen is best:
            self._log.info(
                "no state: recovering in epoch %d (members %s), as its peers report",
                chosen.epoch,
                list(chosen.ids),
            )
        return chosen

    def _own_address(self) -> ReplicaAddress:
        """Where this replica listens: what its durable configuration says (it wins: the others connect there),
        else the cluster file's entry."""
        core = self.core
        in_file = self.config.address_of(self.index)
        mine = next((m for m in core.membership.members if m.id == self.index), None)
        durable = None if mine is None else address_or_none(mine.address)
        if durable is not None:
            if in_file is not None and in_file != durable:
                self._log.warning(
                    "the cluster file gives this replica other endpoints than its configuration (epoch %d) does: "
                    "the configuration wins, listening on peer %s, heartbeat %s, client %s",
                    core.epoch,
                    durable.peer,
                    durable.heartbeat,
                    durable.client,
                )
            return durable
        if in_file is None:
            raise NodeStartError(
                f"replica {self.index} has no endpoints: the cluster file does not list it and its data dir "
                "names none (a new replica: give its endpoints with --address, or add it to the file)"
            )
        return in_file

    def _warn_if_file_differs(self) -> None:
        """After a restart: the durable state (snapshot + log) says who the members are, not the file."""
        core, config = self.core, self.config
        if core.epoch == config.epoch and set(core.membership.ids) == set(config.ids):
            return
        self._log.warning(
            "the cluster file lists replicas %s but this replica's durable state is in epoch %d with members %s: "
            "the durable state wins (write a current file with `zvsr member list --write-config FILE`)",
            list(config.ids),
            core.epoch,
            list(core.membership.ids),
        )

        # --- sockets ------------------------------------------------------------------------------------------

    def _socket(self, kind: int, **options: int | bytes) -> Socket:
        socket = self._context.socket(kind)
        self._sockets.append(socket)
        socket.setsockopt(zmq.LINGER, 0)  # close never waits for unsent messages: they are loss, not debt
        for name, value in options.items():
            socket.setsockopt(getattr(zmq, name), value)
        return socket

    def _bind(self, socket: Socket, endpoint: str, what: str) -> None:
        try:
            socket.bind(endpoint)
        except zmq.ZMQError as error:
            message = f"replica {self.index}: cannot bind its {what} endpoint {endpoint}: {error}"
            raise NodeStartError(message) from error

    def _open_sockets(self) -> None:
        keys, pair = self._keys, self._pair
        curve: dict[str, dict[str, int | bytes]] = {"peer": {}, "client": {}, "heartbeat": {}}
        if keys is not None and pair is not None:
            curve = {
                "peer": security.server_options(pair, security.DOMAIN_REPLICAS),
                "client": security.server_options(pair, security.DOMAIN_CLIENTS),
                "heartbeat": security.server_options(pair, security.DOMAIN_HEARTBEATS),
            }
        self._peer_router = self._socket(
            zmq.ROUTER,
            ROUTER_HANDOVER=1,  # a restarted peer takes its routing id back from its dead connection
            ROUTER_MANDATORY=1,  # never used to send; set as on every ROUTER, so a stray send would fail loudly
            MAXMSGSIZE=c.MESSAGE_BYTES_MAX,
            # No ZMTP heartbeats on this side (the peers' DEALERs send them, and it still answers their PINGs):
            # libzmq 4.3.5 aborts the process (stream_engine_base.cpp:310, `!_io_error`) when a heartbeat timer
            # fires on a connection that was reset while its receive queue was full — which anyone who can
            # reach the port can arrange (found by `zvsr fuzz`; libzmq issue #4841).
            **curve["peer"],
        )
        self._bind(self._peer_router, self.address.peer, "peer")
        self._client_router = self._socket(
            zmq.ROUTER,
            ROUTER_MANDATORY=1,
            MAXMSGSIZE=c.CLIENT_MESSAGE_BYTES_MAX,
            SNDHWM=c.NODE_CLIENT_SNDHWM,
            **curve["client"],
        )
        self._bind(self._client_router, self.address.client, "client")
        # A PUB reads only subscriptions (ours are one empty prefix): a small MAXMSGSIZE keeps it that way.
        self._publisher = self._socket(
            zmq.PUB,
            SNDHWM=c.NODE_HEARTBEAT_SNDHWM,
            MAXMSGSIZE=c.HEARTBEAT_MESSAGE_BYTES_MAX,
            **curve["heartbeat"],
        )
        self._bind(self._publisher, self.address.heartbeat, "heartbeat")
        self._drains[self._peer_router] = self._drain_peers
        self._drains[self._client_router] = self._drain_clients
        self._poller.register(self._peer_router, zmq.POLLIN)
        self._poller.register(self._client_router, zmq.POLLIN)

    # --- the peers: sockets that follow the configuration --------------------------------------------------

    def _sync_peers(self) -> None:
        """Point the sockets towards the peers at the core's configuration: a DEALER and a heartbeat SUB for each
        member (connected from the endpoints in the configuration), none for a replica that left. Called before
        each Ready is sent, so a message to a new member finds its DEALER (its first messages may still be lost
        while it connects: IMMEDIATE; the protocol re-sends)."""
        core = self.core
        membership = core.membership
        if membership is self._membership:
            return
        self._membership = membership
        previous, self._synced_epoch = self._synced_epoch, membership.epoch
        if not self._book.learn(membership):
            self._count("peers: address book full")
        wanted = set(core.peers)
        for peer in sorted(set(self._dealers) - wanted):
            self._close_dealer(peer)
        for peer in sorted(set(self._subscribers) - wanted):
            self._close_subscriber(peer)
        missing = []
        for peer in core.peers:
            if self._dealer(peer) is None:
                missing.append(peer)
            elif peer not in self._subscribers:
                self._open_subscriber(peer)
        self._broadcast = tuple(peer for peer in core.peers if peer in self._dealers)
        if previous is not None and previous != membership.epoch:
            self._log.info(
                "epoch %d (from op %d, view %d): members %s; peers %s",
                membership.epoch,
                membership.start_op,
                membership.start_view,
                list(membership.ids),
                ", ".join(f"r{p} {self._dealer_endpoints[p]}" for p in self._broadcast) or "none",
            )
        if missing:
            self._log.warning("no endpoints known for peers %s: nothing can be sent to them yet", missing)

    def _learn_from(self, message: StartEpoch) -> None:
        """A StartEpoch names a later configuration with its members' endpoints: take them before the core answers
        (a new replica hears of its peers only this way; it has no DEALER to the sender yet)."""
        if message.epoch <= self.core.epoch:
            return
        try:
            announced = decode_membership(message.membership)
        except MembershipError:
            return  # the core drops it too, and counts it
        if not self._book.learn(announced):
            self._count("peers: address book full")
        self._membership = None  # a peer of ours may be known now: set the sockets up again before sending

    def _dealer(self, peer: int) -> Socket | None:
        """The DEALER to replica `peer`, connected now if its endpoints are known (None if they are not); one
        whose endpoints changed is connected again."""
        address = self._book.get(peer)
        if address is None:
            return None
        dealer = self._dealers.get(peer)
        if dealer is not None and self._dealer_endpoints[peer] == address.peer:
            return dealer
        if dealer is not None:
            self._close_dealer(peer)
        if len(self._dealers) >= c.NODE_ADDRESS_BOOK_MAX:
            return None
        zmtp_heartbeats = {
            # So a frozen peer's connection is dropped (and queued sends with it) instead of filling the queue.
            # Also the only way out of a silent trap (measured): when ROUTER_HANDOVER gives our routing id to
            # a newer connection (a restarted twin, an impostor), the peer ROUTER detaches our pipe but keeps
            # the TCP connection, and our sends vanish without an error — forever, without heartbeats. With
            # them the stalled connection times out, the DEALER reconnects and takes its id back.
            "HEARTBEAT_IVL": c.ZMTP_HEARTBEAT_IVL_MS,
            "HEARTBEAT_TIMEOUT": c.ZMTP_HEARTBEAT_TIMEOUT_MS,
            "HEARTBEAT_TTL": c.ZMTP_HEARTBEAT_TTL_MS,
        }
        dealer = self._socket(
            zmq.DEALER,
            ROUTING_ID=routing_id(self.index),
            IMMEDIATE=1,  # queue only on a live connection: a down peer costs an immediate Again, not memory
            SNDHWM=c.NODE_PEER_SNDHWM,
            **zmtp_heartbeats,
            **self._reconnect_options(),
            **self._curve_to(peer),
        )
        dealer.connect(address.peer)
        self._dealers[peer] = dealer
        self._dealer_endpoints[peer] = address.peer
        self._peer_sends[peer] = fast_send(dealer)
        self._send_drop_reasons[peer] = f"send: dropped to r{peer}"
        self._broadcast = tuple(p for p in self.core.peers if p in self._dealers)
        return dealer

    def _open_subscriber(self, peer: int) -> None:
        address = self._book.get(peer)
        assert address is not None
        # CONFLATE must be set before connect; one SUB per peer, so conflation never mixes publishers.
        subscriber = self._socket(
            zmq.SUB,
            CONFLATE=1,
            MAXMSGSIZE=c.HEARTBEAT_MESSAGE_BYTES_MAX,
            **self._reconnect_options(),
            **self._curve_to(peer),
        )
        subscriber.setsockopt(zmq.SUBSCRIBE, b"")
        subscriber.connect(address.heartbeat)
        self._subscribers[peer] = subscriber
        self._drains[subscriber] = partial(self._drain_heartbeats, subscriber, peer)
        self._poller.register(subscriber, zmq.POLLIN)

    def _close_dealer(self, peer: int) -> None:
        self._forget_socket(self._dealers.pop(peer))
        del self._dealer_endpoints[peer]
        del self._peer_sends[peer]
        self._broadcast = tuple(p for p in self._broadcast if p != peer)

    def _close_subscriber(self, peer: int) -> None:
        subscriber = self._subscribers.pop(peer)
        self._poller.unregister(subscriber)
        del self._drains[subscriber]
        self._forget_socket(subscriber)

    def _forget_socket(self, socket: Socket) -> None:
        self._sockets.remove(socket)
        socket.close(linger=0)

    @staticmethod
    def _reconnect_options() -> dict[str, int | bytes]:
        return {"RECONNECT_IVL": c.NODE_RECONNECT_IVL_MS, "RECONNECT_IVL_MAX": c.NODE_RECONNECT_IVL_MAX_MS}

    def _curve_to(self, peer: int) -> dict[str, int | bytes]:
        keys, pair = self._keys, self._pair
        if keys is None or pair is None or not 0 <= peer < len(keys.replicas):
            return {}
        return security.client_options(pair, keys.replicas[peer])

    def _sender(self, identity: bytes) -> int | None:
        """The replica id a peer DEALER's routing id ``r<id>`` names, or None if it names none (or our own)."""
        sender = self._senders.get(identity)
        if sender is not None:
            return sender
        digits = identity[1:]
        if not identity.startswith(b"r") or not digits.isdigit() or len(digits) > 10:
            return None
        if digits != b"%d" % int(digits):  # one spelling per id: no leading zeros
            return None
        sender = int(digits)
        if sender > c.REPLICA_ID_MAX or sender == self.index:
            return None
        if len(self._senders) < c.NODE_ADDRESS_BOOK_MAX:
            self._senders[identity] = sender
        return sender

    def _open_watch(self) -> None:
        """The watch stream's PUB (zvsr.runtime.watch_publisher), if this replica has a watch endpoint."""
        if self.address.watch is None:
            return
        curve: dict[str, int | bytes] = {}
        if self._keys is not None and self._pair is not None:  # admitted clients (and proxies) may subscribe
            curve = security.server_options(self._pair, security.DOMAIN_CLIENTS)
        # An XPUB, so the node knows whether anyone watches; it reads only subscriptions (small MAXMSGSIZE).
        socket = self._socket(
            zmq.XPUB, SNDHWM=c.NODE_WATCH_SNDHWM, MAXMSGSIZE=c.WATCH_SUBSCRIPTION_BYTES_MAX, **curve
        )
        self._bind(socket, self.address.watch, "watch")
        self._watch = WatchPublisher(socket, self._count)
        self._drains[socket] = self._watch.drain_subscriptions
        self._poller.register(socket, zmq.POLLIN)

    def _open_metrics(self) -> None:
        """The /metrics listener (zvsr.runtime.metrics), if this replica has a metrics port."""
        where = self.config.replica_metrics(self.index)
        if where is None:
            return
        try:
            self._metrics = NodeMetrics(
                host=where[0],
                port=where[1],
                peers=self.core.peers,
                wal_path=self._storage.path / WAL_NAME,
                started=time.monotonic(),
            )
        except MetricsStartError as error:
            raise NodeStartError(f"replica {self.index}: {error}") from error
        self._arrivals = self._metrics.arrivals
        self._storage.sync_observer = self._metrics.fsync_seconds.observe

    # --- the reactor --------------------------------------------------------------------------------------

    @property
    def core(self) -> Replica:
        """The protocol core (for tests and tools in the same process; touch it only from the loop's thread)."""
        assert self._core is not None
        return self._core

    def run(self, stop: threading.Event | None = None) -> None:
        """Serve until `stop` is set (checked at least once per tick). Blocking; one thread at a time."""
        if self._closed:
            raise RuntimeError("the node is closed")
        stop = threading.Event() if stop is None else stop
        core = self.core
        poll = self._poller.poll
        drains = self._drains
        tick_s = self.config.tick_ms / 1000
        metrics = self._metrics
        self._running = True
        self._next_tick = time.monotonic() + tick_s
        try:
            self._execute(core.ready())  # what the constructor produced (a recovering core's first Recovery)
            while not stop.is_set() and not core.stopped:
                timeout_ms = math.ceil((self._next_tick - time.monotonic()) * 1000)
                events = poll(timeout_ms if timeout_ms > 0 else 0)
                now = time.monotonic()
                for socket, _ in events:
                    drains[socket](now)
                ticked = now >= self._next_tick
                if ticked:
                    self._run_ticks(now, tick_s)
                self._execute(core.ready())
                self._notice_state()
                if ticked and metrics is not None:
                    self._publish_metrics(metrics)
        except Exception:
            # The core asserts its invariants: continuing after a broken one is worse than stopping (fail-stop).
            self._log.exception("stopping on an unexpected error")
            raise
        finally:
            self._running = False
        if core.stopped:
            # The core handed over (a quorum of the new configuration started it, or the cluster moved past
            # it): nothing here is needed any more. The process exits 0; its data dir may be deleted.
            self.left = True
            self._log.info(
                "left the configuration in epoch %d (members %s): stopping; this replica is no longer needed",
                core.epoch,
                list(core.membership.ids),
            )
            return
        self._log.info("stopped")

    def _run_ticks(self, now: float, tick_s: float) -> None:
        due = int((now - self._next_tick) / tick_s) + 1
        if due > c.NODE_TICKS_CATCH_UP_MAX:
            self._count("ticks: dropped (loop fell behind)", due - c.NODE_TICKS_CATCH_UP_MAX)
            due = c.NODE_TICKS_CATCH_UP_MAX
            self._next_tick = now + tick_s
        else:
            self._next_tick += due * tick_s
        tick = self.core.tick
        for _ in range(due):
            tick()

    def _execute(self, ready: Ready) -> None:
        """The core's contract: persist, then send, then answer clients."""
        if ready.persist:
            self._storage.persist(ready.persist)
        if self.core.membership is not self._membership:
            self._sync_peers()
        for envelope in ready.messages:
            self._send_replica(envelope.to, envelope.message)
        if ready.replies:
            self._send_answers(ready.replies)
            if self._metrics is not None:
                self._metrics.answered(ready.replies, time.monotonic())
        if self._watch is not None:  # after the Ready: publish what this step executed
            self._watch.publish(ready.executed, self.core.commit_number, time.monotonic())
        if self._history is not None:
            self._history.record(ready.executed, ready.restored, self.core.commit_number)

    # --- inbound ------------------------------------------------------------------------------------------

    def _drain_peers(self, now: float) -> None:
        socket = self._peer_router
        senders = self._senders
        heard = self._last_heard
        core = self.core
        on_message = self.core.on_message
        keys = self._keys
        for _ in range(c.NODE_DRAIN_MAX):
            try:
                if keys is None:
                    frames = recv_frames(socket, PEER_FRAMES)
                else:
                    frames, user = recv_frames_with_user(socket, PEER_FRAMES)
            except zmq.Again:
                return
            if len(frames) != PEER_FRAMES:
                detail = f"expected [routing id][message], got {len(frames)}"
                self._reject_frame("peer", "wrong_frame_count", "peer: wrong frame count", detail)
                continue
            sender = senders.get(frames[0])
            if sender is None:
                sender = self._sender(frames[0])
            if sender is None:
                self._reject_frame(
                    "peer", "unknown_identity", "peer: unknown identity", f"routing id {frames[0][:32]!r}"
                )
                continue
            if keys is not None and keys.replica_of(user) != sender:
                # The routing id is the peer's choice; the key is proven. A replica's key claiming another's
                # routing id (or a key we do not know) is an impostor.
                detail = f"routing id r{sender}, key {user}"
                self._reject_frame("peer", "key_mismatch", "peer: key does not match the identity", detail)
                continue
            message = self._decode_replica_message(frames[1], "peer", sender)
            if message is None:
                continue
            if message.replica != sender:
                detail = f"r{sender} sent a message of replica {message.replica}"
                self._reject_frame("peer", "wrong_identity", "peer: wrong identity", detail)
                continue
            if sender in self._dealers or sender in core.membership:
                heard[sender] = now  # a stranger's messages are the core's to judge, not a liveness sign
            self._messages_in += 1
            if type(message) is StartEpoch:
                self._learn_from(message)
            on_message(message)

    def _drain_heartbeats(self, socket: Socket, peer: int, now: float) -> None:
        on_message = self.core.on_message
        for _ in range(c.NODE_DRAIN_MAX):
            try:
                frames = recv_frames(socket, HEARTBEAT_FRAMES)
            except zmq.Again:
                return
            if len(frames) != HEARTBEAT_FRAMES:
                counter = "heartbeat: wrong frame count"
                self._reject_frame("heartbeat", "wrong_frame_count", counter, f"from r{peer}")
                continue
            message = self._decode_replica_message(frames[0], "heartbeat", peer)
            if message is None:
                continue
            if type(message) is not Commit or message.replica != peer:
                detail = f"from r{peer}: {type(message).__name__}"
                self._reject_frame("heartbeat", "not_a_commit", "heartbeat: not a Commit of that peer", detail)
                continue
            self._last_heard[peer] = now
            self._messages_in += 1
            on_message(message)

    def _decode_replica_message(self, data: bytes, where: str, sender: int) -> ReplicaMessage | None:
        try:
            return decode_replica_message(data)
        except DecodeError as error:
            counter = f"{where}: decode error ({error.reason})"
            self._reject_frame(where, error.reason, counter, f"from r{sender}: {error}")
        except Exception as error:  # the decoder's contract is DecodeError only; bad input must not kill us
            detail = f"{type(error).__name__}: {error}"
            self._reject_frame(where, "decoder_failed", f"{where}: decoder failed (our bug)", detail)
        return None

    def _drain_clients(self, now: float) -> None:
        socket = self._client_router
        routes = self._routes
        arrivals = self._arrivals
        on_request = self.core.on_request
        for _ in range(c.NODE_DRAIN_MAX):
            try:
                frames = recv_frames(socket, c.CLIENT_ENVELOPE_FRAMES_MAX)
            except zmq.Again:
                return
            try:
                envelope, payload = parse_client_frames(frames)
            except EnvelopeError as error:
                self._reject_frame("client", error.reason, f"client: bad envelope ({error.reason})", str(error))
                continue
            if is_request_batch(payload):
                self._on_request_batch(envelope, payload, now)
                continue
            try:
                request = decode_request(payload)
            except Exception as error:  # DecodeError, or a decoder bug: either way the client gets an answer
                self._answer_unreadable(envelope, payload, error)
                continue
            client_id = request.client_id
            # LRU: re-inserting moves a client to the end; a new one past the bound evicts the oldest.
            if routes.pop(client_id, None) is None and len(routes) >= c.NODE_CLIENT_ROUTES_MAX:
                del routes[next(iter(routes))]
            routes[client_id] = envelope
            self._requests_in += 1
            if arrivals is not None:  # for the arrival-to-reply histogram; a client's retry keeps the first
                number = request.request_number
                arrival = arrivals.get(client_id)
                if arrival is None or arrival[0] != number:
                    arrivals[client_id] = (number, now)
            on_request(request)

    def _on_request_batch(self, envelope: ClientEnvelope, payload: bytes, now: float) -> None:
        """A proxy's requests in one message (zvsr.wire.batch): each is handled as if it came alone, and the
        sender gets its answers in ReplyBatches."""
        try:
            elements = decode_request_batch(payload)
        except DecodeError as error:
            self._reject_frame("client", error.reason, f"client: bad batch ({error.reason})", str(error))
            self._send_client(envelope, admin.encode_bare_error(admin.clip_message(f"bad batch: {error}")))
            return
        senders = self._batch_senders
        if envelope not in senders and len(senders) >= c.NODE_CLIENT_ROUTES_MAX:
            del senders[next(iter(senders))]
        senders[envelope] = None
        routes = self._routes
        arrivals = self._arrivals
        on_request = self.core.on_request
        self._count("client: request batches")
        for element in elements:
            try:
                request = decode_request(element)
            except Exception as error:
                self._answer_unreadable(envelope, element, error)
                continue
            client_id = request.client_id
            if routes.pop(client_id, None) is None and len(routes) >= c.NODE_CLIENT_ROUTES_MAX:
                del routes[next(iter(routes))]
            routes[client_id] = envelope
            self._requests_in += 1
            if arrivals is not None:  # for the arrival-to-reply histogram; a client's retry keeps the first
                number = request.request_number
                arrival = arrivals.get(client_id)
                if arrival is None or arrival[0] != number:
                    arrivals[client_id] = (number, now)
            on_request(request)

    def _answer_unreadable(self, envelope: ClientEnvelope, payload: bytes, error: Exception) -> None:
        if admin.is_status_query(payload):
            self._count("client: status queries")
            self._send_client(envelope, admin.encode_status(self.status()))
            return
        if self._answer_snapshot_query(envelope, payload):
            return
        history = history_answer(payload, self._history, recovering=self.core.status is Status.RECOVERING)
        if history is not None:
            self._count(f"client: history queries ({history[1]})")
            self._send_client(envelope, history[0])
            return
        transfer = transfer_answer(payload, self.core)  # may start a view change: sent with this step's Ready
        if transfer is not None:
            self._count(f"client: transfer queries ({transfer[1]})")
            self._send_client(envelope, transfer[0])
            return
        backup = self._backups.answer(payload, self.core)  # between core steps: a state after whole ops
        if backup is not None:
            self._count("client: backup queries")
            self._send_client(envelope, backup)
            return
        if isinstance(error, DecodeError):
            self._reject_frame("client", error.reason, f"client: decode error ({error.reason})", str(error))
        else:
            detail = f"{type(error).__name__}: {error}"
            self._reject_frame("client", "decoder_failed", "client: decoder failed (our bug)", detail)
        if self._metrics is not None:
            self._metrics.outcomes[ERROR_BAD_REQUEST] += 1
        text = admin.clip_message(f"cannot read the request: {error}")
        ids = admin.request_ids(payload)
        if ids is None:
            data = admin.encode_bare_error(text)
        else:
            client_id, request_number = ids
            answer = Error(
                view=self.core.view_number,
                client_id=client_id,
                request_number=request_number,
                code=ERROR_BAD_REQUEST,
                message=text,
            )
            data = encode(answer)
        self._send_client(envelope, data)

    def _answer_snapshot_query(self, envelope: ClientEnvelope, payload: bytes) -> bool:
        """Answer a snapshot query (type 32, zvsr.runtime.watch_publisher) from the app as of commit_number;
        False if `payload` is not one. Between core steps, so the state is exactly that after ops
        1..commit_number."""
        core = self.core
        recovering = core.status is Status.RECOVERING
        answer = snapshot_answer(payload, self._app, core.commit_number, recovering=recovering)
        if answer is None:
            return False
        self._count("client: snapshot queries")
        self._send_client(envelope, answer)
        return True

    # --- outbound -----------------------------------------------------------------------------------------

    def _send_replica(self, to: int, message: ReplicaMessage) -> None:
        try:
            data = encode(message)  # once, however many peers it goes to
        except EncodeError as error:  # e.g. a whole-log message beyond MESSAGE_BYTES_MAX: log it, stay up
            self._reject("send: cannot encode (our bug)", str(error), level=logging.ERROR)
            return
        if to != BROADCAST:
            if to not in self._dealers and self._dealer(to) is None:
                # A replica of another configuration we never learnt the endpoints of (a new replica answering
                # one that is leaving, say): lost, as if the network dropped it; the protocol goes elsewhere.
                known = to in self.core.membership
                self._count(f"send: no endpoints for r{to}" if known else "send: no endpoints for a non-member")
                return
            self._send_peer(to, data)
        elif type(message) is Commit:
            try:
                self._publisher.send(data, NOBLOCK)  # a PUB drops at its HWM instead of raising
                self._messages_out += 1
            except zmq.ZMQError as error:
                self._reject("heartbeat: publish failed", str(error))
        else:
            for peer in self._broadcast:
                self._send_peer(peer, data)

    def _send_peer(self, peer: int, data: bytes) -> None:
        try:
            self._peer_sends[peer](data, NOBLOCK)
            self._messages_out += 1
        except zmq.Again:
            reason = self._send_drop_reasons[peer]
            self._count(reason)
            self._losses.warn(reason, "not connected or its queue is full (lost; the protocol re-sends)")
        except zmq.ZMQError as error:
            self._reject(self._send_drop_reasons[peer], f"{error} (lost; the protocol re-sends)")

    def _send_answers(self, answers: Sequence[ClientReply]) -> None:
        routes = self._routes
        batch_senders = self._batch_senders
        grouped: dict[ClientEnvelope, list[bytes]] = {}
        for answer in answers:
            envelope = routes.get(answer.client_id)
            if envelope is None:
                # Normal after a failover or an eviction: the client asked another replica; it will retry here.
                self._count("client: answer without a route")
                continue
            try:
                data = encode(answer)
            except EncodeError as error:  # the adapter bounds results, so this is our bug: log it, stay up
                self._reject("client: cannot encode an answer (our bug)", str(error), level=logging.ERROR)
                continue
            if envelope in batch_senders:
                grouped.setdefault(envelope, []).append(data)
            else:
                self._send_client(envelope, data)
        for envelope, replies in grouped.items():
            for batched, group in batches(replies, c.CLIENT_REPLY_BYTES_MAX):
                self._send_client(envelope, encode_reply_batch(group) if batched else group[0])

    def _send_client(self, envelope: ClientEnvelope, data: bytes) -> None:
        try:
            send_answer(self._client_router, envelope, data)
            self._answers_out += 1
        except zmq.Again:
            self._count("client: answer dropped (queue full)")
        except zmq.ZMQError as error:
            if error.errno == zmq.EHOSTUNREACH:
                self._count("client: answer dropped (client gone)")
            else:
                self._reject("client: answer dropped", str(error))

    # --- diagnostics --------------------------------------------------------------------------------------

    def _count(self, reason: str, amount: int = 1) -> None:
        self._counters[reason] = self._counters.get(reason, 0) + amount

    def _reject(self, reason: str, detail: str, *, level: int = logging.WARNING) -> None:
        """Count `reason` (a fixed phrase) and write a rate-limited warning with the peer-controlled detail."""
        self._counters[reason] = self._counters.get(reason, 0) + 1
        if level == logging.WARNING:
            self._warnings.warn(reason, detail)
        else:
            self._log.log(level, "%s: %s", reason, detail)

    def _reject_frame(self, socket: str, reason: str, counter: str, detail: str) -> None:
        """An inbound message dropped as bad: `_reject` it, and count it for zvsr_bad_frames_total{socket,
        reason} (`reason`: a codec or envelope reason, or a fixed word)."""
        key = (socket, reason)
        self._bad_frames[key] = self._bad_frames.get(key, 0) + 1
        self._reject(counter, detail)

    def _publish_metrics(self, metrics: NodeMetrics) -> None:
        """Once per tick: a sample of plain values for the exporter's threads (zvsr.runtime.metrics)."""
        core = self.core
        wal = self._storage.wal
        snapshot = None if wal is None else wal.snapshot
        snapshots_taken, duplicates = node_sample_counters(core.counters)
        outcomes = dict(metrics.outcomes)
        outcomes["duplicate"] = duplicates
        arrivals = metrics.arrivals
        if len(arrivals) > c.NODE_CLIENT_ROUTES_MAX:  # requests never answered (clients gone): start afresh
            arrivals.clear()
        metrics.publish(
            NodeSample(
                status=core.status.value,
                view=core.view_number,
                primary=core.is_primary(),
                op_number=core.op_number,
                commit_number=core.commit_number,
                cluster_time_ns=core.cluster_time.now(),
                view_changes=self._view_changes,
                client_sessions=len(core.client_table),
                snapshot_op=core.snapshot_op,
                snapshot_bytes=0 if snapshot is None else snapshot.size,
                snapshots_taken=snapshots_taken,
                last_heard=dict(self._last_heard),
                peers=core.peers,
                outcomes=outcomes,
                bad_frames=dict(self._bad_frames),
                commit_durations=metrics.commit_seconds.snapshot(),
            )
        )

    def status(self) -> dict[str, Any]:
        """A snapshot for operators and tests: what the status query answers (besides its ``type``)."""
        core = self.core
        now = time.monotonic()
        heard = dict(self._last_heard)
        counters = dict(core.counters)
        counters.update(self._counters)
        if self._keys is not None:
            counters["zap: connections refused"] = self._keys.denied
        return {
            "replica": self.index,
            "cluster": self.config.cluster_id,
            "epoch": core.epoch,
            # Who is in the configuration (zvsr.runtime.members.describe): ids, endpoints, the exact encoding.
            "membership": describe_membership(core.membership),
            "status": core.status.value,
            "view": core.view_number,
            "role": "primary" if core.is_primary() else "backup",
            "primary": core.primary_index(),
            "op_number": core.op_number,
            "commit_number": core.commit_number,
            "last_normal_view": core.last_normal_view,
            "state_transfer": core.state_transfer is not None,
            "start": self._storage.start,
            "last_heard_ms": {
                peer: (None if peer not in heard else round((now - heard[peer]) * 1000)) for peer in core.peers
            },
            # The primary's view of each backup: the highest op it acknowledged in this view (a restarted backup
            # counts towards quorums again once this reaches commit_number). Empty on a backup.
            "acknowledged": dict(core.pipeline.prepare_ok)
            if core.is_primary() and core.status is Status.NORMAL
            else {},
            "counters": counters,
            "traffic": {
                "messages_in": self._messages_in,
                "messages_out": self._messages_out,
                "requests_in": self._requests_in,
                "answers_out": self._answers_out,
            },
            "uptime_s": round(now - self._started, 3),
            "endpoints": {
                "peer": self.address.peer,
                "heartbeat": self.address.heartbeat,
                "client": self.address.client,
                "watch": self.address.watch,  # None: this replica publishes no watch stream
            },
            # The ops a watcher can still get from this replica (`zvsr watch --from-op`), or None without them.
            "watch_history": self._history_range(),
            "data_dir": None if self._storage.temporary else str(self._storage.path),
            "log_first_op": core.log_base + 1 if core.op_number > core.log_base else 0,
            "log_last_op": core.op_number,
            "snapshot_op": core.snapshot_op,
            # This replica's cluster clock (docs/design.md "Cluster time"): the stamp a primary would give now.
            "cluster_time_ns": core.cluster_time.now(),
            "data_dir_bytes": self._storage.size_bytes(),
            "fsync": "always" if self._storage.fsync else "never",  # the mode, as configured
            "metrics": None if self._metrics is None else self._metrics.url,
        }

    def _history_range(self) -> list[int] | None:
        history = self._history
        return None if history is None or history.base is None else [history.first_op, history.last_op]

    def _log_context(self) -> tuple[str, int]:
        core = self._core
        return ("starting", 0) if core is None else (core.status.value, core.view_number)

    def _core_line(self, line: str) -> None:
        # The core prefixes "r1 normal v3: "; our formatter adds the same prefix in either format.
        self._log.debug(line.partition(": ")[2])

    def _current_state(self) -> State:
        core = self.core
        return (core.status, core.view_number, core.is_primary(), core.state_transfer is not None)

    def _notice_state(self) -> None:
        state = self._current_state()
        if state != self._state:
            previous, self._state = self._state, state
            if state[1] > previous[1]:
                self._view_changes += 1
            self._log_transition(previous, state)

    def _log_transition(self, previous: State, state: State) -> None:
        old_status, old_view, old_primary, old_transfer = previous
        status, view, primary, transfer = state
        core = self.core
        numbers = f"op_number {core.op_number}, commit_number {core.commit_number}"
        if old_status is Status.RECOVERING and status is not Status.RECOVERING:
            self._log.info("recovery done: adopted view %d from its primary (%s)", view, numbers)
        if status is Status.VIEW_CHANGE:
            if old_status is not Status.VIEW_CHANGE or view != old_view:
                self._log.info("view change to view %d (its primary is r%d)", view, core.primary_index())
            return
        if status is Status.TRANSITIONING and old_status is not Status.TRANSITIONING:
            self._log.info(
                "catching up with a later epoch (committed ops from its replicas; takes part in nothing "
                "meanwhile): %s",
                numbers,
            )
            return
        if status is Status.LEAVING and old_status is not Status.LEAVING:
            self._log.info(
                "not a member of epoch %d (members %s): serving the new members until a quorum of them has "
                "started it, then stopping",
                core.epoch,
                list(core.membership.ids),
            )
            return
        if status is not Status.NORMAL:
            return
        if transfer:
            if not old_transfer or view != old_view:
                self._log.info(
                    "state transfer: fetching the log of view %d from r%d after op %d",
                    view,
                    core.primary_index(),
                    core.commit_number,
                )
        elif old_transfer and view == old_view and old_status is Status.NORMAL:
            self._log.info("state transfer done: backup in view %d (%s)", view, numbers)
        elif (old_status, old_view, old_primary) != (status, view, primary) or old_transfer:
            if primary:
                self._log.info("became primary of view %d (%s)", view, numbers)
            else:
                self._log.info("backup in view %d, primary r%d (%s)", view, core.primary_index(), numbers)

    def _log_start(self) -> None:
        storage = self._storage
        where = "a temporary data dir" if storage.temporary else f"data dir {storage.path}"
        self._log.info(
            "replica %d, cluster %d epoch %d (members %s): peer %s, heartbeat %s, client %s; %s",
            self.index,
            self.config.cluster_id,
            self.core.epoch,
            list(self.core.membership.ids),
            self.address.peer,
            self.address.heartbeat,
            self.address.client,
            where,
        )
        if storage.start == START_DISK:
            durable = storage.durable
            assert durable is not None
            self._log.info(
                "restart from disk: view %d (last normal %d), snapshot at op %d, ops %d..%d in the log, "
                "%d known committed%s",
                durable.view_number,
                durable.last_normal_view,
                storage.snapshot_op,
                durable.log_base + 1,
                durable.log_base + len(durable.log),
                durable.commit_number,
                f"; cut a torn tail of {storage.repaired_bytes} bytes" if storage.repaired_bytes else "",
            )
            self._warn_if_file_differs()
        elif storage.start == START_RECOVERY and storage.damaged is not None:
            self._log.warning(
                "restart: damaged durable state moved to %s; this replica runs the Recovery protocol (§4.3) "
                "to repair itself from its peers and takes part in nothing until then",
                storage.damaged,
            )
        elif storage.start == START_RECOVERY and not storage.marker_found:
            self._log.info(
                "start without --init on an empty data directory %s: this replica lost its disk (or it was "
                "wiped), so it runs the Recovery protocol (§4.3) and takes part in nothing until a quorum of "
                "replicas in normal status answered (a brand-new cluster starts with --init instead)",
                storage.path,
            )
        elif storage.start == START_RECOVERY:
            self._log.info(
                "restart: marker %s (created %s) found but no superblock (disk lost), so this replica runs "
                "the Recovery protocol (§4.3) and takes part in nothing until a quorum of replicas in normal "
                "status answered",
                storage.marker_path,
                storage.marker.created,
            )
        elif self.core.status is Status.TRANSITIONING:
            self._log.info(
                "first start of a new replica (--join): waiting to be told of an epoch that includes it, then "
                "catching up from its replicas; add it with `zvsr member add` (or replace) if not done yet"
            )
        else:
            role = "primary" if self.core.is_primary() else "backup"
            self._log.info("first start: marker written; starting in normal status as %s of view 0", role)
        self._log.debug("PRNG seed %d", self.seed)

    # --- shutdown -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every socket (nothing lingers) and release the data dir. Call after `run()` has returned."""
        if self._running:
            raise RuntimeError("close() while run() is active: set its stop event and wait for it first")
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        for socket in self._sockets:
            socket.close(linger=0)
        self._sockets.clear()
        if self._authenticating:
            self._authenticating = False
            security.Keys.stop_authenticator(self._context)
        if self._own_context:
            self._context.term()
        self._storage.close()

    def __enter__(self) -> ReplicaNode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(node: ReplicaNode, stop: threading.Event | None = None) -> None:
    """Run `node` until `stop` is set or, in the main thread, SIGTERM / SIGINT arrives; then close it."""
    run_until_stopped(node.run, node.close, stop)


def serve_node(config: ClusterConfig, replica: int, *, init: bool = False, join: bool = False) -> None:
    """`zvsr node`: configure logging from `config`, start replica `replica`, serve until SIGTERM / SIGINT, or
    until it left the configuration (a reconfiguration removed it and the new members took over): then it
    returns, and the process exits 0.

    A node that cannot start (endpoint in use, foreign or damaged data dir, app that does not load) logs one
    clear line and exits the process with status 1.
    """
    setup_logging(config.log_level, config.log_format)
    try:
        node = ReplicaNode(config, replica, init=init, join=join)
    except (NodeStartError, StorageError, AppLoadError) as error:
        log = ReplicaLogger(logging.getLogger("zvsr.node"), replica=replica, context=lambda: ("starting", 0))
        log.error("cannot start: %s", error)
        raise SystemExit(1) from error
    serve(node)
