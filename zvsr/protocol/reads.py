"""Linearizable reads without a log entry (sans-IO): the primary's waiting reads, its confirmation rounds and
read lease, and a backup's promise not to change views.

Theory of operation. The app declares which ops only read (`state_machine.ReadOnlyQueries`); with read_mode
`read_index` or `lease` (`Config.read_mode`) the primary answers them from its state instead of putting them in
the log. A read R must see every write acknowledged before R arrived, and nothing a deposed primary may miss:

- *Read index.* Every write acknowledged before R arrived is in our commit_number at arrival if we acknowledged
  it, and among the ops of the log we installed when our view started if an earlier view did (a new primary's
  commit_number may lag behind ops the old one committed and answered: Raft's "commit an entry of your own term
  first"). So R waits until we have executed `max(commit_number at arrival, view_start_op)`.
- *Still primary.* A quorum, counting us, must have been in normal status in our view *after R arrived*: then no
  later view had started before that moment (a view change needs a quorum to leave ours, and two quorums share a
  replica), so no write of a later view was acknowledged before R arrived. The proof is a round number: the
  primary puts its current `read_round` on every Prepare and Commit, and starts a new round (a larger number)
  for reads that no round sent since their arrival covers: on the next Prepares (free), or on a Commit while
  fewer than READ_ROUNDS_IN_FLIGHT_MAX rounds are unconfirmed (reads arriving meanwhile wait for a later one). A
  backup echoes the round of the Prepare or Commit it answers in its PrepareOk; it answers only messages of its
  own view in normal status, and the primary counts a PrepareOk only of its current view, so an echo of round r
  in view v was sent by a backup in normal status in view v after the primary sent r. R needs round
  `read_round + 1` at its arrival: every round at least that large was sent after R arrived. Rounds increase
  over the replica's lifetime and start from a random number (the injected PRNG, drawn at the first round), so a
  primary restarted in the same view cannot take a delayed echo of its previous life for a fresh one. One round
  serves every read waiting for it, and under load it rides on the Prepares that go out anyway.
- *Lease* (read_mode `lease`). A backup that answers a Prepare or Commit of its primary promises not to start or
  join a view change for P = a primary timeout of its own clock after it received it (`promise_until`; every
  replica also promises so at its start, since a restart forgets earlier promises). When a quorum, counting the
  primary, has echoed rounds the primary sent at clock readings t_i, no view after ours can start before the
  earliest of the promises ends, which is no sooner (in real time) than P / (1 + ρ) after the send. The primary
  measures real time d as at least d (1 - ρ) on its own clock, so it holds the lease until
  `t + P (1 - ρ) / (1 + ρ)` of its clock, t the quorum's (quorum - 1)-th latest send time among the backups'
  echoes (ρ = READ_LEASE_CLOCK_DRIFT). While it holds the lease it serves a read at once (its read index is
  the current commit_number, which must have reached view_start_op); otherwise the read takes the round path.
  Times are the injected clock's (`ClusterTime.clock`), never wall time. In lease mode every heartbeat starts a
  round, so the lease is renewed while the cluster is idle.

Reads never enter the client table: a read is answered at most once per arrival and changes nothing, so a retry
is simply served again. The client's request numbering still holds: a read is admitted by the same rules as a
write (a cached reply for the latest number, nothing for an older one, `session_expired` for a forgotten
session), and the first request of a client the table does not know yet goes through the log, read or not, so
its session exists and a later write with a larger number (reads skipped numbers) is admitted as new.
Reads are served only by a primary in normal status in the view they arrived in: at any change of view, epoch or
status the waiting ones are dropped (their clients retry), and a deposed primary can neither complete a round
(its backups have left the view) nor hold a lease (they promised not to leave it while it does).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from zvsr.constants import (
    READ_LEASE_CLOCK_DRIFT,
    READ_MODE_LEASE,
    READ_MODE_LOG,
    READ_ROUNDS_IN_FLIGHT_MAX,
    READ_ROUNDS_KEPT,
    TICK_MS,
)
from zvsr.protocol.config import Config
from zvsr.protocol.messages import Request
from zvsr.protocol.timeout import Prng

# Random start of the round numbers: well inside the codec's unsigned 64-bit range, however long a replica runs.
_ROUND_BASE_BITS = 48


def promise_ns(config: Config) -> int:
    """P: how long a backup promises not to change views after it hears its primary (its own clock's ns)."""
    return config.primary_timeout_ticks * TICK_MS * 1_000_000


def lease_ns(config: Config) -> int:
    """How long (its own clock's ns) the primary holds a lease after the send of a round a quorum echoed."""
    drift = READ_LEASE_CLOCK_DRIFT
    return int(promise_ns(config) * (1 - drift) / (1 + drift))


@dataclass(slots=True)
class PendingRead:
    request: Request
    read_index: int  # the op the primary must have executed before it answers
    read_round: int  # the round a quorum must have echoed (every round >= it was sent after the read arrived)


class Reads:
    __slots__ = (
        "mode",
        "lease_ns",
        "promise_ns",
        "read_round",
        "round_wanted",
        "sent_at",
        "view_key",
        "view_start_op",
        "view_round_base",
        "confirmed",
        "confirmed_sent_at",
        "pending",
        "promise_until",
        "_prng",
    )

    def __init__(self, config: Config, prng: Prng, now_ns: int) -> None:
        self.mode = config.read_mode
        self.lease_ns = lease_ns(config)
        self.promise_ns = promise_ns(config)
        self._prng = prng
        self.read_round = 0  # the latest round sent (0: none yet)
        self.round_wanted = False  # a read waits for a round not sent yet: start one in this step
        self.sent_at: deque[tuple[int, int]] = deque(maxlen=READ_ROUNDS_KEPT)  # lease: (round, clock when sent)
        self.view_key: tuple[int, int] | None = None  # (epoch, view) of everything below
        self.view_start_op = 0  # op_number when we started serving reads in this view (a lower bound on it)
        self.view_round_base = 0  # read_round then: rounds after it are this view's
        self.confirmed: dict[int, int] = {}  # backup -> the largest round it echoed in this view
        self.confirmed_sent_at: dict[int, int] = {}  # lease: backup -> when we sent the round it echoed last
        self.pending: deque[PendingRead] = deque()
        # A backup (lease mode) starts or joins no view change before its clock reads this: a restarted replica
        # may have promised before it went down, so every replica promises at its start.
        self.promise_until = now_ns + self.promise_ns if self.mode == READ_MODE_LEASE else 0

    @property
    def enabled(self) -> bool:
        return self.mode != READ_MODE_LOG

    @property
    def lease_mode(self) -> bool:
        return self.mode == READ_MODE_LEASE

    def sync(self, epoch: int, view: int, op_number: int) -> int:
        """Called by the primary (normal status) before it uses anything here: a new view (or epoch) starts
        afresh. Returns how many waiting reads that dropped."""
        key = (epoch, view)
        if key == self.view_key:
            return 0
        self.view_key = key
        self.view_start_op = op_number
        self.view_round_base = self.read_round
        self.confirmed.clear()
        self.confirmed_sent_at.clear()
        return self.drop()

    def drop(self) -> int:
        """Forget the waiting reads (we are no longer the primary of their view); their clients retry."""
        dropped = len(self.pending)
        self.pending.clear()
        self.round_wanted = False
        return dropped

    def read_index(self, commit_number: int) -> int:
        return max(commit_number, self.view_start_op)

    def wait(self, request: Request, commit_number: int) -> None:
        """A read arrived: it waits for the next round and its read index."""
        self.pending.append(PendingRead(request, self.read_index(commit_number), self.read_round + 1))
        self.round_wanted = True

    def start_round(self, now_ns: int) -> int:
        """A new round number, sent from now on on every Prepare and Commit."""
        if self.read_round == 0:
            self.read_round = self._prng.getrandbits(_ROUND_BASE_BITS)
        self.read_round += 1
        self.round_wanted = False
        if self.lease_mode:
            self.sent_at.append((self.read_round, now_ns))
        return self.read_round

    def confirm(self, backup: int, read_round: int) -> None:
        """A PrepareOk of our view from `backup` echoed `read_round`."""
        if read_round <= self.confirmed.get(backup, 0):
            return
        self.confirmed[backup] = read_round
        if self.lease_mode:
            sent = next((at for number, at in self.sent_at if number == read_round), None)
            if sent is not None:
                self.confirmed_sent_at[backup] = sent

    def confirmed_round(self, others_needed: int) -> int:
        """The largest round that `others_needed` backups have echoed (a later echo covers every earlier round)."""
        if others_needed == 0:
            return self.read_round
        rounds = sorted(self.confirmed.values(), reverse=True)
        return rounds[others_needed - 1] if len(rounds) >= others_needed else 0

    def commit_round_due(self, others_needed: int) -> bool:
        """A Commit may start a new round: fewer than READ_ROUNDS_IN_FLIGHT_MAX of this view's rounds are still
        unconfirmed. Reads arriving meanwhile wait for a later round, so reads cost a bounded number of Commits
        per round trip however many arrive (a slow link would queue a Commit per read in front of the Prepares)."""
        confirmed = max(self.confirmed_round(others_needed), self.view_round_base)
        return self.read_round - confirmed < READ_ROUNDS_IN_FLIGHT_MAX

    def lease_until(self, others_needed: int) -> int | None:
        """The clock reading until which we hold the lease (None: none held)."""
        if not self.lease_mode:
            return None
        if others_needed == 0:
            return None  # a one-replica group needs no lease: every round is confirmed as it starts
        times = sorted(self.confirmed_sent_at.values(), reverse=True)
        if len(times) < others_needed:
            return None
        return times[others_needed - 1] + self.lease_ns

    def promised(self, now_ns: int) -> bool:
        """A backup's promise (lease mode) still holds: it must not start or join a view change."""
        return now_ns < self.promise_until

    def promise(self, now_ns: int) -> None:
        """A backup heard its primary's Prepare or Commit in its view (lease mode)."""
        if self.lease_mode:
            self.promise_until = max(self.promise_until, now_ns + self.promise_ns)

    def invariants(self) -> None:
        assert all(read.read_round <= self.read_round + 1 for read in self.pending)
        assert not self.pending or self.view_key is not None
        assert self.promise_until == 0 or self.lease_mode
