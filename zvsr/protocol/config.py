"""Static configuration of one replica group: who is in it and how long each timeout runs.

The configuration is the paper's sorted list of replicas (§4): replica i is index i, and the primary of view v
is replica v mod n. Identity and time bounds live here so the ZeroMQ runtime, the simulator and the tests build
replicas the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from zvsr import constants as c


def primary_of(view: int, replica_count: int) -> int:
    """The primary of view `view` among `replica_count` replicas: replica view mod n (§4, round robin). Client
    sessions and the proxy ask here; `Config.primary` writes the same arithmetic out for the core's hot path
    (tests/test_protocol_rules.py checks the two agree for every n and view edge)."""
    return view % replica_count


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    replica_count: int
    cluster: int = 0
    epoch: int = 0
    heartbeat_ticks: int = c.HEARTBEAT_TICKS
    primary_timeout_ticks: int = c.PRIMARY_TIMEOUT_TICKS
    primary_timeout_jitter_ticks: int = c.PRIMARY_TIMEOUT_JITTER_TICKS
    # A brand-new replica gives the primary of view 0 this much longer to show itself, once: replicas of a new
    # cluster start within a few hundred ms of each other, and a backup that came up first must not start a
    # view change before the primary's process is running. 0 here (scenarios count ticks); the node sets
    # STARTUP_GRACE_TICKS.
    startup_grace_ticks: int = 0
    # Admit reconfiguration requests (§7). Off until the driver acts on epoch changes (it must connect to new
    # members and store the epoch with the view state); the simulator turns it on.
    reconfiguration: bool = False
    view_change_resend_ticks: int = c.VIEW_CHANGE_RESEND_TICKS
    view_change_timeout_ticks: int = c.VIEW_CHANGE_TIMEOUT_TICKS
    view_change_timeout_max_ticks: int = c.VIEW_CHANGE_TIMEOUT_MAX_TICKS
    prepare_resend_ticks: int = c.PREPARE_RESEND_TICKS
    repair_ticks: int = c.REPAIR_TICKS
    recovery_resend_ticks: int = c.RECOVERY_RESEND_TICKS
    quorum_timeout_ticks: int = c.QUORUM_TIMEOUT_TICKS
    prepare_entries_max: int = c.PREPARE_ENTRIES_MAX
    prepare_bytes_max: int = c.PREPARE_BYTES_MAX
    new_state_entries_max: int = c.NEW_STATE_ENTRIES_MAX
    new_state_bytes_max: int = c.NEW_STATE_BYTES_MAX
    pipeline_ops_max: int = c.PIPELINE_OPS_MAX
    request_queue_max: int = c.REQUEST_QUEUE_MAX
    client_table_max: int = c.CLIENT_TABLE_MAX
    # Refuse requests of sessions that were not registered through the log (`zvsr.protocol.client_table`). Off,
    # a client's request 1 also opens a session implicitly (the hole registration closes stays open): the node
    # sets it from its `require_registration` option; the simulator turns it on.
    require_registration: bool = False
    snapshot_interval_ops: int = c.SNAPSHOT_INTERVAL_OPS  # 0: never snapshot (the log is kept whole)
    snapshot_chunk_bytes: int = c.SNAPSHOT_CHUNK_BYTES
    snapshot_pin_ticks: int = c.SNAPSHOT_PIN_TICKS
    # How a read-only op (the app declares which: `zvsr.protocol.state_machine.ReadOnlyQueries`) is served:
    # "log" (through the log like any op), "read_index" or "lease" (without a log entry: `zvsr.protocol.reads`).
    read_mode: str = c.READ_MODE_DEFAULT

    def __post_init__(self) -> None:
        if not 1 <= self.replica_count <= c.REPLICAS_MAX:
            raise ValueError(f"replica_count must be 1..{c.REPLICAS_MAX}, got {self.replica_count}")
        for name in (
            "heartbeat_ticks",
            "primary_timeout_ticks",
            "view_change_resend_ticks",
            "view_change_timeout_ticks",
            "prepare_resend_ticks",
            "repair_ticks",
            "recovery_resend_ticks",
            "quorum_timeout_ticks",
            "prepare_entries_max",
            "prepare_bytes_max",
            "new_state_entries_max",
            "new_state_bytes_max",
            "pipeline_ops_max",
            "client_table_max",
            "snapshot_chunk_bytes",
            "snapshot_pin_ticks",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.startup_grace_ticks < 0:
            raise ValueError("startup_grace_ticks must be >= 0")
        if self.view_change_timeout_max_ticks < self.view_change_timeout_ticks:
            raise ValueError("view_change_timeout_max_ticks must be >= view_change_timeout_ticks")
        if self.snapshot_interval_ops < 0:
            raise ValueError("snapshot_interval_ops must be >= 0 (0: never)")
        if self.snapshot_chunk_bytes > c.SNAPSHOT_CHUNK_BYTES:
            raise ValueError(f"snapshot_chunk_bytes must be <= {c.SNAPSHOT_CHUNK_BYTES} (the codec's bound)")
        if self.read_mode not in c.READ_MODES:
            raise ValueError(f"read_mode must be one of {', '.join(c.READ_MODES)}, got {self.read_mode!r}")
        if self.heartbeat_ticks >= self.primary_timeout_ticks:
            raise ValueError("heartbeat_ticks must be shorter than primary_timeout_ticks")

    @property
    def f(self) -> int:
        """Failures tolerated: n = 2f + 1 (an even n tolerates the same f as n - 1)."""
        return (self.replica_count - 1) // 2

    @property
    def quorum(self) -> int:
        """A majority, counting oneself. f + 1 for the paper's n = 2f + 1; for an even n, f + 1 would let two
        quorums miss each other, so it is n // 2 + 1 there too."""
        return self.replica_count // 2 + 1

    def primary(self, view: int) -> int:
        # primary_of(view, self.replica_count), written out: the core asks about a dozen times per op, and a
        # second call level costs more than the arithmetic (tests/test_protocol_rules.py checks they agree).
        return view % self.replica_count
