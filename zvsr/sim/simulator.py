"""The deterministic simulator (VOPR-style): one seed decides every message, fault and timeout.

Theory of operation. Replicas (the real `zvsr.protocol.Replica`) and clients (the real `ClientSession`, as the
proxy will run it) exchange messages through a virtual network (`network.py`) on a virtual clock in ms. Replicas
tick every `TICK_MS`; clients tick at the same rate and issue coordination-app operations one at a time.

A run has two phases. In the *safety phase* (`events` events) faults are injected: message loss, duplication
and reordering all the time, plus partitions (symmetric, one-way, isolating one replica), diskless crashes
followed by restarts that run the Recovery protocol (never more than f replicas down or recovering at once —
beyond that the paper's diskless model promises nothing), paused replicas (no ticks, messages wait) and stalled
clocks (messages, but no ticks). In the *liveness phase* every fault is healed and clients stop issuing new
operations: every outstanding request must complete within a bounded virtual time.

Lease holders. Besides the clients above, `lease_clients` clients work with leases (TTL a few hundred ms of
virtual time, drawn per seed) and the locks `LOCKS`: each grants itself a lease, tries to lock one of the locks
with it and, while it holds the lock or waits for it, keeps the lease alive every TTL/3 of its own clock (which
runs at its own rate, like the replicas'). A holder lets go after a while: usually it revokes its lease, but
sometimes it just stops keeping it alive (a "dead" holder), so the cluster expires the lease and a waiter gets
the lock. Their ops are kept out of the linearizability history (the model knows nothing of time);
`invariants.LeaseChecker` checks them instead. In the liveness phase, holders and waiters with a lease keep it
alive for `LEASE_LIVENESS_TTLS` TTLs more, so leases are also checked in a healed cluster, then stop.

Reconfigurations (§7) are among the faults: an admin client asks the primary to grow the configuration, shrink
it (3 to 5 members and back), or replace a member; the new replicas start empty and catch up, the replicas that
leave stop once the new configuration has started (they are retired, never restarted). Crashes, partitions and
pauses go on meanwhile, so transitions are cut in the middle. Clients learn a new configuration as a proxy
would, from the replicas (`ClientSession.learn_configuration`).

After every event the checker (`invariants.py`) verifies what must always hold, incrementally; at the end the
clients' history is checked for linearizability. A violation raises `Violation` carrying the seed, the
invariant and the last events, so `zvsr sim --seed S` replays it exactly.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr import constants as c
from zvsr.apps.adapter import MsgpackStateMachine
from zvsr.apps.coordination import CoordinationApp
from zvsr.constants import TICK_MS
from zvsr.lincheck import UNKNOWN, Operation, ZvsrModel, check
from zvsr.protocol.client_session import ClientSession
from zvsr.protocol.config import Config
from zvsr.protocol.membership import Member, Membership, reconfiguration_operation
from zvsr.protocol.messages import Error, LogEntry, Redirect, Reply, Request
from zvsr.protocol.ready import BROADCAST, PersistLog, PersistRecord, PersistSnapshot, PersistViewState
from zvsr.protocol.replica import DurableState, Replica, Status
from zvsr.sim.invariants import Checker, Holding, LeaseChecker, Violation
from zvsr.sim.network import EventQueue, Network, NetworkOptions
from zvsr.wire.codec import (
    DecodeError,
    EncodeError,
    decode_client_reply,
    decode_replica_message,
    decode_request,
    encode,
)

KEYS = ("k0", "k1", "k2")
ADMIN = 900  # the admin client that asks for reconfigurations (its client_id and its number)
LOCKS = ("l0", "l1")  # the locks lease holders contend for (fewer than holders, so some wait)
LEASE_TTLS_MS = (200, 300, 500)  # swarm draws one per seed: short, so failovers often outlast what is left
LEASE_LIVENESS_TTLS = 2  # in the liveness phase, lease holders keep alive this many TTLs more, then stop
LEASE_CLIENT_BASE = 1500  # lease clients' numbers: 1500, 1501, ...
# A client's register nonce is this plus its number: far above any op number, so never a session id (the ids
# replies are routed by: `session_owner`).
NONCE_BASE = 1 << 48


@dataclass(slots=True)
class SimOptions:
    replicas: int = 3
    clients: int = 4
    events: int = 2000
    network: NetworkOptions = field(default_factory=NetworkOptions)
    fault_every_ms: int = 120
    crash: bool = True
    pause: bool = True
    partition: bool = True
    check_linearizability: bool = True
    lincheck_timeout_s: float = 20.0
    # Swarm testing (as TigerBeetle's VOPR does): each seed draws its own loss, delay and fault rates, so
    # some seeds are calm and some are storms. Off, the fixed values above are used.
    swarm: bool = True
    # Snapshots every this many committed ops (0: never), sent in chunks of this many bytes. Swarm draws small
    # values so that truncation, snapshot transfer and view changes over snapshots happen in short runs.
    snapshot_interval_ops: int = 20
    snapshot_chunk_bytes: int = 256
    # A crash with the disk kept is, this often, a crash in the middle of a Ready's writes (torn, unsynced).
    torn_write: float = 0.3
    # Client sessions the replicas remember; small values make sessions expire (a client then starts a new one).
    client_table_max: int = 100_000
    # Lease holders (besides `clients`) and their leases' TTL in ms of virtual time.
    lease_clients: int = 2
    lease_ttl_ms: int = 300
    # Reconfigurations among the faults (grow, shrink, replace a member), at most one in flight.
    reconfigure: bool = True
    # How gets are served (Config.read_mode). None: swarm draws read_index or lease per seed (read_index without
    # swarm), so every workload's reads take the path without a log entry.
    read_mode: str | None = None
    # Session churn: the client table holds CHURN_TABLE_MAX sessions; after each answer a client starts a new
    # session this often (registering, so evicting another); and each request it sends is, this often, also
    # delivered once more much later (SIM_LATE_COPY_MS_*: past many evictions), as a retry stuck in a queue.
    churn: bool = False
    churn_new_session: float = 0.5
    churn_late_copy: float = 0.1


@dataclass(slots=True)
class SimResult:
    seed: int
    events: int
    ops_ok: int
    ops_unknown: int
    views: int
    virtual_ms: int
    linearizable: str
    lease_expire_ops: int = 0  # lease_expire ops committed (applied at the same op number by every replica)
    leases_expired: int = 0  # leases they ended
    lock_grants: int = 0  # lock grants committed (each with a larger fencing token)
    epochs: int = 0  # reconfigurations committed (the last epoch reached)
    reads_served: int = 0  # reads answered without a log entry (zvsr.protocol.reads)
    read_mode: str = c.READ_MODE_DEFAULT
    refused_expired: int = 0  # committed requests refused because their session was evicted before they committed


@dataclass(slots=True)
class SimClient:
    session: ClientSession
    pending_input: dict[str, Any] | None = None
    pending_call: int = 0
    next_at: int = 0


@dataclass(slots=True)
class LeaseHolder:
    """A lease client (module docstring). One request at a time: `pending` is the op in flight, first sent at
    `sent_at`. `state`: idle (no lease), locking, holding, waiting (lock refused; retries), done (stopped)."""

    name: str
    session: ClientSession
    rate: float  # its clock's rate: it keeps alive every TTL/3 of its own clock
    state: str = "idle"
    lease: int | None = None
    owner: str = ""  # the lock owner it names: one per lease (a re-entrant lock would not move to a new lease)
    lock: str = ""
    belief_end: float = 0.0  # until when its lease surely lives (LeaseChecker.belief)
    holding: Holding | None = None
    keepalive_at: int = 0
    retry_at: int = 0  # waiting: the next lock attempt
    release_at: int = 0  # holding: revoke then; waiting: give up then
    dead_at: int | None = None  # holding: stops keeping alive then (a dead holder), and returns at release_at
    put_due: bool = False  # holding: it has yet to put a key attached to its lease
    pending: dict[str, Any] | None = None
    sent_at: int = 0
    next_at: int = 0  # idle: the next round starts then
    wake_at: int | None = None  # the one "holder" event that counts (later ones supersede nothing)


class Simulation:
    def __init__(self, seed: int, options: SimOptions | None = None) -> None:
        self.seed = seed
        self.options = options or SimOptions()
        self.prng = random.Random(seed)
        if self.options.swarm:
            self.options = self._swarm(self.options)
        self.events = EventQueue()
        self.network = Network(
            prng=random.Random(self.prng.getrandbits(64)), events=self.events, options=self.options.network
        )
        self.config = Config(
            replica_count=self.options.replicas,
            cluster=7,
            snapshot_interval_ops=self.options.snapshot_interval_ops,
            snapshot_chunk_bytes=self.options.snapshot_chunk_bytes,
            client_table_max=self.options.client_table_max,
            reconfiguration=self.options.reconfigure,
            read_mode=self.options.read_mode or c.READ_MODE_DEFAULT,
            require_registration=True,
        )
        self.crash_while_writing: set[int] = set()  # crash these at their next write (torn_write)
        self.now = 0
        self.trace: deque[tuple[int, str]] = deque(maxlen=c.SIM_TRACE_EVENTS_KEPT)
        self.replicas: list[Replica | None] = []  # by replica id; new replicas get the next ids
        self.incarnation = [0] * self.options.replicas
        self.retired: set[int] = set()  # left the configuration and stopped: never restarted
        # New replicas that never started an epoch as a member: one that loses its disk is started again as new
        # (its operator runs it with the same flags; it made no promise anyone relies on).
        self.joining: set[int] = set()
        # The admin client that reconfigures, and the configuration clients address (the latest one known).
        self.admin: ClientSession | None = None
        self.admin_number = 0
        self.configuration = Membership.initial(self.options.replicas)
        self.pending: tuple[int, ...] = ()  # the configuration the admin asked for last
        # The configuration before the latest one, until a quorum of the latest has started it: the old group is
        # still the one that holds the state, and the paper's failure bound holds for it meanwhile.
        self.transition_from: Membership | None = None
        self.reconfigurations = 0
        self.paused: set[int] = set()
        self.stalled: set[int] = set()
        self.backlog: dict[int, list[tuple[Any, Any]]] = {i: [] for i in range(self.options.replicas)}
        self.leases = LeaseChecker(spread=c.SIM_CLOCK_RATE_SPREAD, violation=self._violation)
        self.checker = Checker(
            reference=self.new_state_machine(),
            violation=self._violation,
            leases=self.leases,
            client_table_max=self.options.client_table_max,
        )
        self.disks = [Disk() for _ in range(self.options.replicas)]
        # Each replica's clock runs at its own rate (within SIM_CLOCK_RATE_SPREAD of true time), for good: cluster
        # time must not depend on clocks agreeing, only on each one measuring elapsed time roughly right.
        spread = c.SIM_CLOCK_RATE_SPREAD
        self.clock_rates = [1 + self.prng.uniform(-spread, spread) for _ in range(self.options.replicas)]
        for index in range(self.options.replicas):
            self.replicas.append(self._new_replica(index, recovering=False))
        # Clients are keyed by a stable number (their process, for the history); a client whose session expired
        # continues under a new client_id, so replies are routed by the session's client_id to its owner.
        self.clients: dict[int, SimClient] = {}
        self.session_owner: dict[int, int] = {}
        for number in range(self.options.clients):
            client_id = 1000 + number
            self.clients[client_id] = SimClient(self._new_session(client_id, NONCE_BASE + client_id))
        self.history: list[Operation] = []
        self.event_count = 0
        self.liveness = False
        self.liveness_started = 0
        # Lease holders get a PRNG of their own, so adding them changes the rest of a seed's run less.
        self.lease_prng = random.Random(self.prng.getrandbits(64))
        self.holders: dict[int, LeaseHolder] = {}
        for number in range(LEASE_CLIENT_BASE, LEASE_CLIENT_BASE + self.options.lease_clients):
            rate = 1 + self.lease_prng.uniform(-spread, spread)
            session = self._new_holder_session(number, NONCE_BASE + number)
            self.holders[number] = LeaseHolder(f"h{number}", session, rate)

    def _swarm(self, options: SimOptions) -> SimOptions:
        prng = self.prng
        reconfigure = options.reconfigure and prng.random() < 0.5  # half the seeds keep their configuration
        network = NetworkOptions(
            delay_ms_min=1,
            delay_ms_max=prng.choice((2, 5, 12, 40)),
            loss=prng.choice((0.0, 0.01, 0.05, 0.15)),
            duplicate=prng.choice((0.0, 0.01, 0.05)),
        )
        fault_every_ms = prng.choice((40, 120, 300))
        snapshot_interval_ops = prng.choice((0, 3, 8, 20, 60))
        snapshot_chunk_bytes = prng.choice((16, 100, 4096))
        torn_write = prng.choice((0.0, 0.3, 0.9))
        client_table_max = prng.choice((3, 1000, 1000, 1000))
        lease_clients = prng.choice((1, 2, 3))
        if options.churn:
            client_table_max = c.SIM_CHURN_TABLE_MAX
        elif client_table_max == 3:
            # Sessions expire (the regular clients churn through 3 rows), but lease clients get rows of their
            # own: the core remembers only client_table_max evicted ids, so with many more sessions than rows a
            # session evicted and then forgotten would have a retry of its first request executed again.
            client_table_max += lease_clients
        return replace(
            options,
            network=network,
            fault_every_ms=fault_every_ms,
            snapshot_interval_ops=snapshot_interval_ops,
            snapshot_chunk_bytes=snapshot_chunk_bytes,
            torn_write=torn_write,
            client_table_max=client_table_max,
            lease_clients=lease_clients,
            lease_ttl_ms=prng.choice(LEASE_TTLS_MS),
            reconfigure=reconfigure,
            # By the seed's parity, not a draw: the rest of the seed's swarm stays as it was.
            read_mode=options.read_mode or (c.READ_MODE_LEASE if self.seed % 2 else c.READ_MODE_READ_INDEX),
            swarm=False,
        )

    # --- construction -------------------------------------------------------------------------------------

    def _new_replica(
        self, index: int, *, recovering: bool, durable: DurableState | None = None, joining: bool = False
    ) -> Replica:
        self.incarnation[index] += 1
        label = f"r{index}"

        def log(text: str) -> None:
            self.trace.append((self.now, text))

        replica = Replica(
            config=self.config,
            replica=index,
            state_machine=self.new_state_machine(),
            prng=random.Random(self.prng.getrandbits(64)),
            recovering=recovering,
            durable=durable,
            logger=log,
            clock=partial(self._clock, index),
            # A replica that lost its disk knows the configuration its operator gives it: the latest one.
            membership=self.configuration if recovering and self.reconfigurations else None,
            joining=joining,
        )
        how = " (recovering)" if recovering else " (from disk)" if durable is not None else ""
        how += " (joining)" if joining else ""
        self._note(f"{label} started{how}")
        return replica

    def _new_session(self, owner: int, nonce: int, *, retry_ticks: int | None = None) -> ClientSession:
        """A session that registers before its first request (and again after session_expired) with `nonce`."""
        self.session_owner[nonce] = owner
        retry = c.REQUEST_TIMEOUT_TICKS if retry_ticks is None else retry_ticks
        retry_max = c.REQUEST_TIMEOUT_MAX_TICKS if retry_ticks is None else retry_ticks
        session = ClientSession(
            client_id=nonce,
            replica_count=self.options.replicas,
            prng=random.Random(self.prng.getrandbits(64)),
            request_timeout_ticks=retry,
            request_timeout_max_ticks=retry_max,
            register=True,
            new_nonce=lambda: NONCE_BASE + self.prng.getrandbits(40),
        )
        if self.reconfigurations:
            session.learn_configuration(self.configuration.ids, self.configuration.start_view)
        return session

    def _sessions(self) -> Iterator[ClientSession]:
        yield from (client.session for client in self.clients.values())
        yield from (holder.session for holder in self.holders.values())
        if self.admin is not None:
            yield self.admin

    def _new_holder_session(self, owner: int, client_id: int) -> ClientSession:
        """A lease holder's session re-sends a request stuck in a failover every TTL/3, as often as it keeps alive:
        the usual backoff (up to REQUEST_TIMEOUT_MAX_TICKS) outlasts a short TTL, and a holder that stopped asking
        for that long would lose its lease through its own silence, not through the cluster."""
        ticks = max(1, min(c.REQUEST_TIMEOUT_TICKS, self.options.lease_ttl_ms // 3 // TICK_MS))
        return self._new_session(owner, client_id, retry_ticks=ticks)

    def _clock(self, index: int) -> int:
        """Replica `index`'s monotonic clock in ns: virtual time at its own rate."""
        return int(self.now * 1_000_000 * self.clock_rates[index])

    @staticmethod
    def new_state_machine() -> MsgpackStateMachine:
        return MsgpackStateMachine(CoordinationApp())

    def _note(self, text: str) -> None:
        self.trace.append((self.now, text))

    # --- the run ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """The first events: every replica's and client's ticks, and the first fault. `run` calls it; a scenario
        calls it, then drives the run itself with `run_until`, `crash` and the network."""
        for index in range(self.options.replicas):
            self.events.push(1 + index * 3 % TICK_MS, "tick", index)
            self._flush(index)
        for client_id in self.clients:
            self.events.push(self.prng.randint(0, 20), "client", client_id)
        for number, holder in self.holders.items():
            holder.next_at = self.lease_prng.randint(0, 50)
            self._holder_schedule(number)
        options = self.options
        if options.crash or options.pause or options.partition:
            self.events.push(options.fault_every_ms, "fault", None)

    def run_until(self, condition: Callable[[], bool], *, within_ms: int, what: str) -> None:
        """Run events until `condition` holds (checked after each), failing if `within_ms` of virtual time pass
        first. The checker runs as in `run`: a broken invariant raises `Violation`."""
        deadline = self.now + within_ms
        while not condition():
            if self.now > deadline:
                raise AssertionError(f"seed={self.seed} t={self.now}ms: not within {within_ms} ms: {what}")
            self._step()

    def crash(self, index: int, *, restart_after_ms: int) -> None:
        """Crash replica `index` now, its disk kept; it restarts `restart_after_ms` later."""
        self._crash_one(index, disk=True, restart_after_ms=restart_after_ms)

    def tick_now(self, index: int) -> None:
        """One extra tick of replica `index`, now (its regular ticks go on): a scenario's way to have the replica's
        timers act before the next message reaches it."""
        replica = self.replicas[index]
        assert replica is not None
        replica.tick()
        self._flush(index)

    def primary(self) -> int | None:
        """The replica that is primary in normal status, in the highest such (epoch, view)."""
        best: tuple[int, int, int] | None = None
        for index, replica in enumerate(self.replicas):
            if replica is not None and replica.status is Status.NORMAL and replica.is_primary():
                if best is None or (replica.epoch, replica.view_number) > best[:2]:
                    best = (replica.epoch, replica.view_number, index)
        return None if best is None else best[2]

    def run(self) -> SimResult:
        self.start()
        while self.event_count < self.options.events:
            self._step()
        self._start_liveness_phase()
        deadline = self.now + c.SIM_LIVENESS_MS_MAX
        while self._busy():
            if self.now > deadline:
                raise self._violation("liveness: requests still outstanding after every fault healed")
            self._step()
        verdict = self._check_history()
        views = max(r.view_number for r in self.replicas if r is not None)
        ok = sum(1 for op in self.history if op.output is not UNKNOWN)
        leases = self.leases
        return SimResult(
            self.seed,
            self.event_count,
            ok,
            len(self.history) - ok,
            views,
            self.now,
            verdict,
            lease_expire_ops=leases.expire_ops,
            leases_expired=leases.expired,
            lock_grants=leases.grants,
            epochs=self.configuration.epoch,
            reads_served=len(self.checker.served_reads),
            read_mode=self.config.read_mode,
            refused_expired=self.checker.sessions_evicted_refusals,
        )

    def _busy(self) -> bool:
        """Liveness phase: a request is still outstanding, or a lease holder is still keeping alive."""
        if any(client.session.outstanding is not None for client in self.clients.values()):
            return True
        if self.admin is not None and self.admin.outstanding is not None:
            return True
        return any(h.session.outstanding is not None or h.state != "done" for h in self.holders.values())

    def _step(self) -> None:
        event = self.events.pop()
        assert event.at >= self.now
        self.now = event.at
        self.event_count += 1
        kind = event.kind
        try:
            if kind == "deliver":
                self._deliver(*event.payload)
            elif kind == "tick":
                self._tick(event.payload)
            elif kind == "client":
                self._client(event.payload)
            elif kind == "holder":
                self._holder(event.payload)
            elif kind == "fault":
                self._fault()
            elif kind == "restart":
                self._restart(event.payload)
            elif kind == "resume":
                self._resume(event.payload)
            elif kind == "admin":
                self._admin_tick()
            else:
                raise AssertionError(kind)
        except AssertionError as error:  # an assertion in the core is a found bug: report it as a violation
            if isinstance(error, Violation):
                raise
            raise self._violation(f"assertion failed: {error}") from error

    def _deliver(self, source: Any, to: Any, message: Any) -> None:
        if not self.network.delivered_through(source, to):
            return
        if isinstance(to, tuple):  # a client
            self.checker.on_client_reply(message)
            if to[1] == ADMIN:
                assert self.admin is not None
                self._session_reply(ADMIN, self.admin, message)
                return self._admin_progress()
            holder = self.holders.get(to[1])
            if holder is not None:
                self._session_reply(to[1], holder.session, message)
                self._holder_progress(to[1])
                self._holder_schedule(to[1])
                return
            client = self.clients[to[1]]
            self._session_reply(to[1], client.session, message)
            self._client_progress(to[1])
            return
        replica = self.replicas[to]
        if replica is None:
            return
        if to in self.paused:
            self.backlog[to].append((source, message))
            return
        if isinstance(message, Request):
            replica.on_request(message)
        else:
            replica.on_message(message)
        self._flush(to)

    def _session_reply(self, owner: int, session: ClientSession, message: Any) -> None:
        """A reply reaches a client's session; a register's names the session id its replies come to from now."""
        session.on_reply(message)
        self.session_owner[session.client_id] = owner  # (after session_expired: the nonce it registers with next)

    def _flush(self, index: int) -> None:
        replica = self.replicas[index]
        assert replica is not None
        ready = replica.ready()
        self.leases.on_ready(ready, self.now)  # before a torn write: the entries were appended all the same
        if index in self.crash_while_writing and ready.persist:
            # The process dies in the middle of step 1: part of the writes land, nothing is sent. The step itself
            # happened (in memory): what it executed is committed, and a snapshot of it may be among the writes
            # that landed, so the checker learns what it executed (not its log: unsent, and maybe not on disk).
            self.disks[index].apply(ready.persist, prng=self.prng)
            self.checker.executed_before_crash(index, replica, ready)
            self.crash_while_writing.discard(index)
            self._crash_one(index, disk=True, during="writing")
            return
        self.disks[index].apply(ready.persist)  # step 1 of the contract, before anything is sent
        for envelope in ready.messages:
            message, size = self._wire_sized(envelope.message, decode_replica_message)
            for peer in replica.peers if envelope.to == BROADCAST else (envelope.to,):
                if peer < len(self.replicas):
                    self.network.send(self.now, index, peer, message, size=size)
        for reply in ready.replies:
            owner = self.session_owner.get(reply.client_id)
            if owner is not None:
                self.network.send(self.now, index, ("c", owner), self._wire(reply, decode_client_reply))
        replica.invariants()
        self.checker.after_step(index, replica, ready)
        if replica.epoch > self.configuration.epoch:
            self._learn_configuration(replica.membership)
        if index in self.joining and replica.status is Status.NORMAL:
            self.joining.discard(index)
        if self.transition_from is not None and self._started_by_quorum():
            self.transition_from = None
        if replica.stopped:
            self._retire(index)

    def _wire(self, message: Any, decode: Callable[[bytes], Any]) -> Any:
        """What the receiver gets: the message through the real codec, so the core never sends what the wire
        would refuse (a Prepare whose commit_number passes its last op, say) without the simulator noticing."""
        return self._wire_sized(message, decode)[0]

    def _wire_sized(self, message: Any, decode: Callable[[bytes], Any]) -> tuple[Any, int]:
        """`_wire`, and the size of the encoding (what a slow link takes time for)."""
        try:
            data = encode(message)
            return decode(data), len(data)
        except (DecodeError, EncodeError) as error:
            raise self._violation(f"a message the codec refuses: {error}: {message!r:.300}") from error

    def _tick(self, index: int) -> None:
        replica = self.replicas[index]
        if replica is None:
            return  # crashed: the restart event schedules ticks again
        self.events.push(self.now + TICK_MS, "tick", index)
        if index in self.paused or index in self.stalled:
            return
        replica.tick()
        self._flush(index)

    # --- clients ------------------------------------------------------------------------------------------

    def _client(self, client_id: int) -> None:
        client = self.clients[client_id]
        session = client.session
        if self.liveness and session.outstanding is None:
            return  # it issues nothing more: no need to tick it (its reply, if any, came already)
        self.events.push(self.now + TICK_MS, "client", client_id)
        if session.outstanding is None and not self.liveness and self.now >= client.next_at:
            operation = self._random_operation()
            client.pending_input = operation
            client.pending_call = self.now
            session.submit(msgpack.packb(operation))
        session.tick()
        self._client_progress(client_id)

    def _client_progress(self, client_id: int) -> None:
        client = self.clients[client_id]
        session = client.session
        for to, request in session.take_outbox():
            targets = session.members if to == BROADCAST else (to,)
            wired = self._wire(request, decode_request)
            for target in targets:
                self.network.send(self.now, ("c", client_id), target, wired)
                if self.options.churn and self.prng.random() < self.options.churn_late_copy:
                    late = self.prng.randint(c.SIM_LATE_COPY_MS_MIN, c.SIM_LATE_COPY_MS_MAX)
                    self.network.send(self.now + late, ("c", client_id), target, wired)
        while (completion := session.take_completion()) is not None:
            assert client.pending_input is not None
            if completion.result is not None:
                output = msgpack.unpackb(completion.result)
                self.history.append(
                    Operation(client_id, client.pending_input, output, client.pending_call, self.now)
                )
            else:  # an error we gave up on: the outcome is unknown
                self.history.append(Operation(client_id, client.pending_input, UNKNOWN, client.pending_call))
            client.pending_input = None
            client.next_at = self.now + self.prng.randint(0, 30)
            if self.options.churn and self.prng.random() < self.options.churn_new_session:
                client.session = self._new_session(client_id, NONCE_BASE + self.prng.getrandbits(40))

    def _random_operation(self) -> dict[str, Any]:
        key = self.prng.choice(KEYS)
        roll = self.prng.random()
        if roll < 0.3:
            return {"op": "get", "key": key}
        if roll < 0.55:
            return {"op": "put", "key": key, "value": self.prng.randint(0, 9)}
        if roll < 0.8:
            return {
                "op": "cas",
                "key": key,
                "expected": self.prng.randint(0, 9),
                "new": self.prng.randint(0, 9),
            }
        return {"op": "incr", "key": f"n{key}", "by": 1}

    # --- lease holders ------------------------------------------------------------------------------------

    def _holder(self, number: int) -> None:
        holder = self.holders[number]
        if holder.wake_at != self.now:
            return  # superseded by an earlier wake-up
        holder.wake_at = None
        if holder.session.outstanding is None:
            self._holder_act(number, holder)
        if holder.session.outstanding is not None:
            holder.session.tick()
        self._holder_progress(number)
        self._holder_schedule(number)

    def _holder_schedule(self, number: int) -> None:
        """One wake-up: every tick while a request is in flight (for its retries), else at the next action."""
        holder = self.holders[number]
        if holder.session.outstanding is not None:
            at = self.now + TICK_MS
        elif holder.state == "done":
            return
        else:
            at = max(self.now + 1, self._holder_next(holder))
        if holder.wake_at is None or at < holder.wake_at:
            holder.wake_at = at
            self.events.push(at, "holder", number)

    def _holder_next(self, holder: LeaseHolder) -> int:
        if holder.state == "idle":
            return holder.next_at
        if holder.state == "locking" or (holder.put_due and holder.dead_at is None):
            return self.now  # its lock request, right after the grant; or its put, right after the lock
        times = []
        if self.liveness:  # it stops then; it neither revokes nor gives up before
            times.append(self.liveness_started + LEASE_LIVENESS_TTLS * self.options.lease_ttl_ms)
        else:
            times.append(holder.release_at)
        if holder.dead_at is None or holder.keepalive_at < holder.dead_at:
            times.append(holder.keepalive_at)
        elif self.liveness:
            times.append(holder.release_at)  # back from the dead, then done
        if holder.state == "waiting":
            times.append(holder.retry_at)
        return min(times)

    def _holder_act(self, number: int, holder: LeaseHolder) -> None:
        """The holder's next request, if one is due (none is in flight)."""
        now, ttl = self.now, self.options.lease_ttl_ms
        if holder.state == "done":
            return
        if self.liveness and (holder.state == "idle" or now >= self.liveness_started + LEASE_LIVENESS_TTLS * ttl):
            holder.state = "done"  # no new rounds once faults are healed; and the liveness check ran long enough
            return
        if holder.state == "idle":
            if now >= holder.next_at:
                self._holder_send(number, {"op": "lease_grant", "ttl_ms": ttl})
            return
        assert holder.lease is not None
        if holder.state == "locking":
            self._holder_send(number, self._lock_op(holder))
        elif holder.dead_at is not None and now >= holder.dead_at:
            if now >= holder.release_at:  # back from the dead: it knows nothing of its old lease and lock
                self._holder_reset(holder)
        elif now >= holder.release_at and not self.liveness:
            if holder.holding is not None:
                self.leases.released(holder.holding, now)  # from the moment it asks, it no longer acts as holder
            self._holder_send(number, {"op": "lease_revoke", "lease": holder.lease})
        elif now >= holder.keepalive_at:
            holder.keepalive_at = now + int(ttl / 3 / holder.rate)  # TTL/3 of its own clock
            self._holder_send(number, {"op": "lease_keepalive", "lease": holder.lease})
        elif holder.put_due:  # a key that lives as long as the lease (deleted when it ends)
            holder.put_due = False
            key = f"{holder.lock}/holder"
            self._holder_send(number, {"op": "put", "key": key, "value": holder.owner, "lease": holder.lease})
        elif holder.state == "waiting" and now >= holder.retry_at:
            self._holder_send(number, self._lock_op(holder))

    def _lock_op(self, holder: LeaseHolder) -> dict[str, Any]:
        return {"op": "lock", "name": holder.lock, "owner": holder.owner, "lease": holder.lease}

    def _holder_send(self, number: int, operation: dict[str, Any]) -> None:
        holder = self.holders[number]
        holder.pending, holder.sent_at = operation, self.now
        holder.session.submit(msgpack.packb(operation))

    def _holder_reset(self, holder: LeaseHolder) -> None:
        """The round is over (revoked, lost, given up, or back from the dead): a new one starts later."""
        holder.state, holder.lease, holder.holding, holder.dead_at = "idle", None, None, None
        holder.next_at = self.now + self.lease_prng.randint(0, self.options.lease_ttl_ms)

    def _holder_progress(self, number: int) -> None:
        holder = self.holders[number]
        session = holder.session
        for to, request in session.take_outbox():
            targets = session.members if to == BROADCAST else (to,)
            wired = self._wire(request, decode_request)
            for target in targets:
                self.network.send(self.now, ("c", number), target, wired)
        while (completion := session.take_completion()) is not None:
            operation, holder.pending = holder.pending, None
            assert operation is not None
            if completion.result is None:  # the outcome is unknown: give the round up (its lease will expire)
                self._holder_reset(holder)
                continue
            self._holder_answer(holder, operation, msgpack.unpackb(completion.result))
            if holder.session.outstanding is None and holder.state != "done":
                self._holder_act(number, holder)  # e.g. lock right after the grant: no idle tick in between

    def _holder_answer(self, holder: LeaseHolder, operation: dict[str, Any], answer: Any) -> None:
        now, ttl, prng = self.now, self.options.lease_ttl_ms, self.lease_prng
        kind = operation["op"]
        failed = type(answer) is dict and "error" in answer
        if kind == "lease_grant":
            if failed:
                return self._holder_reset(holder)
            holder.lease, holder.state, holder.lock = answer["lease"], "locking", prng.choice(LOCKS)
            holder.owner = f"{holder.name}.{holder.lease}"
            self._note(f"{holder.name}: lease {holder.lease} granted (sent at {holder.sent_at}ms)")
            holder.belief_end = self.leases.belief(holder.sent_at, ttl)
            holder.keepalive_at = holder.sent_at + int(ttl / 3 / holder.rate)
            holder.release_at = now + prng.randint(2 * ttl, 6 * ttl)  # a waiter gives up then
        elif kind == "lease_keepalive":
            if failed:  # lease_not_found: the cluster expired it (legitimately: LeaseChecker judges)
                self._note(f"{holder.name}: lease {holder.lease} lost (keepalive sent at {holder.sent_at}ms)")
                return self._holder_reset(holder)
            holder.belief_end = max(holder.belief_end, self.leases.belief(holder.sent_at, ttl))
            if holder.holding is not None:
                self.leases.belief_extended(holder.holding, holder.belief_end)
        elif kind == "lock":
            if failed:  # lease_not_found: the lease ended before the lock op
                return self._holder_reset(holder)
            if answer["ok"]:
                token, until = answer["token"], holder.belief_end
                self._note(f"{holder.owner}: holds {holder.lock} (token {token}) until {until:.0f}ms")
                if holder.holding is None:
                    holder.holding = self.leases.lock_granted(holder.lock, holder.owner, now, holder.belief_end)
                holder.state = "holding"
                holder.put_due = prng.random() < 0.5
                holder.release_at = now + prng.randint(ttl // 2, 4 * ttl)
                if prng.random() < 0.3:  # a dead holder: it stops keeping alive at some point while holding
                    holder.dead_at = now + prng.randint(0, ttl)
                    holder.release_at = holder.dead_at + prng.randint(ttl, 3 * ttl)  # and comes back then
                    self._note(f"{holder.owner}: stops keeping alive at {holder.dead_at}ms")
            else:
                holder.state = "waiting"
                holder.retry_at = now + prng.randint(TICK_MS, ttl // 2)
        elif kind == "lease_revoke":
            self._note(f"{holder.name}: lease {holder.lease} revoked")
            self._holder_reset(holder)
        return None

    # --- faults -------------------------------------------------------------------------------------------

    def _fault(self) -> None:
        if self.liveness:
            return
        self.events.push(self.now + self.prng.randint(1, 2 * self.options.fault_every_ms), "fault", None)
        roll = self.prng.random()
        options = self.options
        if roll < 0.25:
            if self.network.blocked:
                self._note("network healed")
                self.network.heal()
        elif roll < 0.35 and options.partition:
            self._partition()
        elif roll < 0.45 and options.partition:
            self._clog()
        elif roll < 0.6 and options.crash:
            self._crash()
        elif roll < 0.75 and options.pause:
            index = self.prng.choice(self._running())
            if self.replicas[index] is not None and index not in self.paused:
                self.paused.add(index)
                self._note(f"r{index} paused")
                self.events.push(self.now + self.prng.randint(50, 800), "resume", index)
        elif roll < 0.85 and options.pause:
            index = self.prng.choice(self._running())
            if index not in self.stalled:
                self.stalled.add(index)
                self._note(f"r{index} clock stalled")
                self.events.push(self.now + self.prng.randint(50, 800), "resume", index)
        elif roll < 0.92 and options.reconfigure:
            self._reconfigure()

    def _partition(self) -> None:
        replicas = self._running()
        self.prng.shuffle(replicas)
        cut = self.prng.randint(1, len(replicas) - 1) if len(replicas) > 1 else 1
        side_a, side_b = replicas[:cut], replicas[cut:]
        one_way = self.prng.random() < 0.3
        self.network.heal()
        for a in side_a:
            for b in side_b:
                self.network.block(a, b)
                if not one_way:
                    self.network.block(b, a)
        self._note(f"partition {side_a} {'->' if one_way else '|'} {side_b}")

    def _clog(self) -> None:
        running = self._running()
        for _ in range(self.prng.randint(1, len(running))):
            source, to = self.prng.choice(running), self.prng.choice(running)
            if source != to:
                extra = self.prng.choice((20, 80, 300))
                until = self.now + self.prng.randint(50, 1000)
                self.network.clog(source, to, until_ms=until, extra_delay_ms=extra)
                self._note(f"link r{source}->r{to} clogged +{extra}ms until {until}ms")

    def _crash(self) -> None:
        if self.prng.random() < 0.5:
            # With its disk: any number of replicas may be down at once, even all of them.
            everyone = self.prng.random() < 0.1
            for index in self._running() if everyone else [self.prng.choice(self._running())]:
                if self.prng.random() < self.options.torn_write and self.replicas[index] is not None:
                    self.crash_while_writing.add(index)  # at its next write, whenever that is
                else:
                    self._crash_one(index, disk=True)
            return
        # Diskless: at most f (of the latest configuration) down or recovering, the bound of the paper. A replica
        # that is not a member (joining, or leaving) counts too: it may become one, or still be needed.
        down = sum(1 for i in self._running() if _down_or_recovering(self.replicas[i]))
        if self.transition_from is not None:
            # A member of the old group that stopped before a quorum of the new one started is lost for good.
            down += sum(1 for i in self.transition_from.ids if i in self.retired)
        sizes = [len(self.configuration.ids)]
        if self.admin is not None and self.admin.outstanding is not None:
            sizes.append(len(self.pending))  # a transition in flight: both groups must keep their bound
        if self.transition_from is not None:
            sizes.append(len(self.transition_from.ids))
        if down >= (min(sizes) - 1) // 2:
            return
        self._crash_one(self.prng.choice(self._running()), disk=False)

    def _crash_one(self, index: int, *, disk: bool, during: str = "", restart_after_ms: int | None = None) -> None:
        if self.replicas[index] is None:
            return
        self.crash_while_writing.discard(index)
        if not disk:
            self.disks[index] = Disk(initialized=False)
        self.replicas[index] = None
        self.paused.discard(index)
        self.stalled.discard(index)
        self.backlog[index] = []
        kept = "disk kept" if disk else "memory and disk lost"
        self._note(f"r{index} crashed ({kept}{', torn while writing' if during else ''})")
        self.checker.on_crash(index)
        if restart_after_ms is None:
            restart_after_ms = self.prng.randint(20, 600)
        self.events.push(self.now + restart_after_ms, "restart", index)

    def _restart(self, index: int) -> None:
        if self.replicas[index] is not None or index in self.retired:
            return
        disk = self.disks[index]
        if not disk.initialized and index in self.joining:
            self.disks[index] = Disk()
            self.replicas[index] = self._new_replica(index, recovering=False, joining=True)
        elif not disk.initialized:
            # Nothing durable yet (memory and disk were lost, and Recovery never finished): recover again.
            self.replicas[index] = self._new_replica(index, recovering=True)
        else:
            self.replicas[index] = self._new_replica(index, recovering=False, durable=disk.state())
        self.events.push(self.now + TICK_MS, "tick", index)
        self._flush(index)

    def _resume(self, index: int) -> None:
        if index in self.paused:
            self.paused.discard(index)
            self._note(f"r{index} resumed")
            backlog, self.backlog[index] = self.backlog[index], []
            for source, message in backlog:
                self._deliver(source, index, message)
        elif index in self.stalled:
            self.stalled.discard(index)
            self._note(f"r{index} clock resumed")

    def _start_liveness_phase(self) -> None:
        self.liveness = True
        self.liveness_started = self.now
        for number in self.holders:
            self._holder_schedule(number)
        self._note("liveness phase: faults healed")
        self.network.heal()
        self.crash_while_writing.clear()
        for index in sorted(self.paused | self.stalled):
            self.paused.discard(index)
            self.stalled.discard(index)
            self._resume_backlog(index)
        for index, replica in enumerate(self.replicas):
            if replica is None:
                self._restart(index)
        if self.admin is not None:
            self.admin.learn_configuration(self.configuration.ids, self.configuration.start_view)
        self.network.options = NetworkOptions(
            delay_ms_min=self.network.options.delay_ms_min,
            delay_ms_max=self.network.options.delay_ms_max,
            loss=0.0,
            duplicate=self.network.options.duplicate,
        )

    def _resume_backlog(self, index: int) -> None:
        backlog, self.backlog[index] = self.backlog[index], []
        for source, message in backlog:
            self._deliver(source, index, message)

    # --- reconfiguration (§7) ------------------------------------------------------------------------------

    def _running(self) -> list[int]:
        """Replica ids that exist and are not retired (crashed ones included: they come back)."""
        return [i for i in range(len(self.replicas)) if i not in self.retired]

    def _reconfigure(self) -> None:
        """An admin asks for a new configuration of the latest epoch: grow, shrink (within 3..5 members) or
        replace a member. New replicas start empty, joining; they are ordered last, so a member that holds the
        state leads the new epoch's first view."""
        if self.admin is not None and self.admin.outstanding is not None:
            return
        members = list(self.configuration.ids)
        prng = self.prng
        choices = ["replace"] + (["grow"] if len(members) < 5 else []) + (["shrink"] if len(members) > 3 else [])
        change = prng.choice(choices)
        next_id = max(len(self.replicas), self.configuration.highest_id + 1)
        joining: list[int] = []
        if change == "grow":
            joining = list(range(next_id, next_id + prng.randint(1, 5 - len(members))))
        elif change == "shrink":
            for _ in range(prng.randint(1, len(members) - 3)):
                members.remove(prng.choice(members))
        else:
            members.remove(prng.choice(members))
            joining = [next_id]
        prng.shuffle(members)
        new = tuple(members + joining)
        # The paper's model holds per group: at most f of the new configuration may have lost their state.
        down = sum(1 for i in new if i not in joining and _down_or_recovering(self.replicas[i]))
        if down > (len(new) - 1) // 2:
            return
        self.pending = new
        for index in joining:
            self._add_replica(index)
        self._note(f"reconfigure ({change}): epoch {self.configuration.epoch} {self.configuration.ids} -> {new}")
        if self.admin is None:
            self.admin = self._new_session(ADMIN, NONCE_BASE + ADMIN)
            self.events.push(self.now + TICK_MS, "admin", None)
        self.admin_number += 1
        operation = reconfiguration_operation(self.configuration.epoch, tuple(Member(i) for i in new))
        self.admin.submit(operation)
        self._admin_progress()

    def _add_replica(self, index: int) -> None:
        assert index == len(self.replicas)
        self.incarnation.append(0)
        self.disks.append(Disk())
        self.backlog[index] = []
        self.clock_rates.append(1 + self.prng.uniform(-c.SIM_CLOCK_RATE_SPREAD, c.SIM_CLOCK_RATE_SPREAD))
        self.replicas.append(None)
        self.joining.add(index)
        self.replicas[index] = self._new_replica(index, recovering=False, joining=True)
        self.events.push(self.now + TICK_MS, "tick", index)
        self._flush(index)

    def _admin_tick(self) -> None:
        admin = self.admin
        assert admin is not None
        if admin.outstanding is None and self.liveness:
            return
        self.events.push(self.now + TICK_MS, "admin", None)
        admin.tick()
        self._admin_progress()

    def _admin_progress(self) -> None:
        admin = self.admin
        assert admin is not None
        for to, request in admin.take_outbox():
            wired = self._wire(request, decode_request)
            for target in admin.members if to == BROADCAST else (to,):
                self.network.send(self.now, ("c", ADMIN), target, wired)
        while (completion := admin.take_completion()) is not None:
            answer = "unknown" if completion.result is None else msgpack.unpackb(completion.result)
            self._note(f"reconfiguration answered: {answer} {completion.error or ''}")

    def _learn_configuration(self, configuration: Membership) -> None:
        """A replica entered a later epoch: clients learn its configuration, as a proxy would from heartbeats."""
        self.transition_from = self.transition_from or self.configuration
        self.configuration = configuration
        self.reconfigurations += 1
        self._note(f"epoch {configuration.epoch} started: members {configuration.ids}")
        for session in self._sessions():
            session.learn_configuration(configuration.ids, configuration.start_view)

    def _started_by_quorum(self) -> bool:
        """A quorum of the latest configuration is in normal status in its epoch (or later)."""
        configuration = self.configuration
        started = 0
        for index in configuration.ids:
            replica = self.replicas[index] if index < len(self.replicas) else None
            if replica is not None and replica.status is Status.NORMAL and replica.epoch >= configuration.epoch:
                started += 1
        return started >= configuration.quorum

    def _retire(self, index: int) -> None:
        """A replica that left and handed over stops for good (its process exits)."""
        self._note(f"r{index} left the configuration and stopped")
        self.retired.add(index)
        self.replicas[index] = None
        self.paused.discard(index)
        self.stalled.discard(index)
        self.crash_while_writing.discard(index)
        self.checker.on_crash(index)

    # --- the end ------------------------------------------------------------------------------------------

    def _check_history(self) -> str:
        if not self.options.check_linearizability:
            return "skipped"
        result = check(self.history, ZvsrModel(), self.options.lincheck_timeout_s)
        if result.verdict == "illegal":
            raise self._violation(f"history is not linearizable: {result}")
        return str(result.verdict)

    def _violation(self, what: str) -> Violation:
        lines = [f"seed={self.seed} t={self.now}ms: {what}", "last events:"]
        lines += [f"  {at:>8}ms {text}" for at, text in self.trace]
        return Violation(self.seed, what, "\n".join(lines))


def _down_or_recovering(replica: Replica | None) -> bool:
    return replica is None or replica.status is Status.RECOVERING


@dataclass(slots=True)
class Disk:
    """A replica's durable state as its Ready.persist records left it, written the way the node's storage
    writes them: the snapshot (atomically, with the log rebased after it), then the log records in order, then
    the view state. `apply(records, torn=True)` is a crash in the middle of that: a prefix of the writes lands
    (the last log record torn off, or more), nothing after it — and, as in the node, nothing of that Ready was
    sent. A disk lost with its replica starts again uninitialized and holds nothing a restart may trust until
    the replica's first view state is written (when Recovery completes): until then a restart runs Recovery
    again, as the real node does without a superblock."""

    view_number: int = 0
    last_normal_view: int = 0
    commit_number: int = 0
    log: list[LogEntry] = field(default_factory=list)
    log_base: int = 0
    snapshot: bytes | None = None
    initialized: bool = True
    epoch: int = 0

    def apply(self, records: list[PersistRecord], *, prng: random.Random | None = None) -> None:
        """Write `records`; with `prng`, crash partway (a random prefix of the writes survives)."""
        budget: int | None = None
        if prng is not None:  # a bound on the writes, not their exact count: all of them may land
            upper = sum(1 + len(r.entries) if isinstance(r, PersistLog) else 1 for r in records)
            budget = prng.randrange(upper)
        for record in records:
            for write in self._writes(record):
                if budget is not None:
                    if budget == 0:
                        return
                    budget -= 1
                write()

    def _writes(self, record: PersistRecord) -> Iterator[Callable[[], None]]:
        """The atomic writes of one record, worked out when it is reached (after the records before it)."""
        if isinstance(record, PersistSnapshot):
            yield partial(self._rebase, record)
        elif isinstance(record, PersistLog):
            # As the WAL does: what the log already holds identically is not rewritten, so a torn write can
            # only lose entries that differ from the new log (never committed) and those not written before.
            start = max(record.op_number_first, self.log_base + 1)
            entries = record.entries[start - record.op_number_first :]
            skip = 0
            while skip < len(entries) and self.entry(entries[skip].op_number) == entries[skip]:
                skip += 1
            first = start + skip
            if first <= self.log_base + len(self.log):
                yield partial(self._truncate, first - 1)
            for entry in entries[skip:]:
                yield partial(self._append, entry)
        else:
            yield partial(self._view_state, record)

    def entry(self, op_number: int) -> LogEntry | None:
        if self.log_base < op_number <= self.log_base + len(self.log):
            return self.log[op_number - self.log_base - 1]
        return None

    def _rebase(self, record: PersistSnapshot) -> None:
        """As the WAL does: the log now starts after record.log_base — or after the snapshot itself, if the log
        on disk ends before it (the entries in between are in the snapshot)."""
        self.snapshot = record.data
        last = self.log_base + len(self.log)
        if last < record.op_number:
            self.log.clear()  # in place: the writes queued after this one append to this list
            self.log_base = record.op_number
        elif record.log_base > self.log_base:
            del self.log[: record.log_base - self.log_base]
            self.log_base = record.log_base

    def _truncate(self, op_number: int) -> None:
        op_number = max(op_number, self.log_base)  # what the snapshot covers is never rewritten
        assert op_number <= self.log_base + len(self.log), "the storage would refuse a gap"
        del self.log[op_number - self.log_base :]

    def _append(self, entry: LogEntry) -> None:
        if entry.op_number <= self.log_base:
            return  # covered by the snapshot
        assert entry.op_number == self.log_base + len(self.log) + 1, "the storage would refuse a gap"
        self.log.append(entry)

    def _view_state(self, record: PersistViewState) -> None:
        self.view_number = record.view_number
        self.last_normal_view = record.last_normal_view
        self.commit_number = record.commit_number
        self.epoch = record.epoch
        self.initialized = True

    def state(self) -> DurableState:
        return DurableState(
            view_number=self.view_number,
            last_normal_view=self.last_normal_view,
            commit_number=self.commit_number,
            log=tuple(self.log),
            log_base=self.log_base,
            snapshot=self.snapshot,
            epoch=self.epoch,
        )


Runner = Callable[[int], SimResult]


def run_seed(seed: int, options: SimOptions | None = None) -> SimResult:
    return Simulation(seed, options).run()


# Re-exported for callers that only need the message kinds the simulator routes.
__all__ = ["Error", "Redirect", "Reply", "SimOptions", "SimResult", "Simulation", "Violation", "run_seed"]
