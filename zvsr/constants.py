"""Every bound in zvsr, named, in one place (STYLE rule 7).

Sizes are in bytes or counts; durations in ticks of the core's logical clock (`TICK_MS` of wall time each in the
ZeroMQ runtime, virtual milliseconds in the simulator). The protocol core imports these; so do the codec, the
runtime and the simulator, so a bound cannot silently differ between them.
"""

from __future__ import annotations

from typing import Final

# --- logical time ---
TICK_MS: Final = 10

# --- timeouts, in ticks (defaults; `zvsr.protocol.config.Config` can override each) ---
HEARTBEAT_TICKS: Final = 5  # primary sends Commit (heartbeat, also on the PUB) this often, even under load
PRIMARY_TIMEOUT_TICKS: Final = 20  # a backup suspects the primary after this long without hearing it
PRIMARY_TIMEOUT_JITTER_TICKS: Final = 10  # random extra, so backups don't all start view changes at once
STARTUP_GRACE_TICKS: Final = 200  # a brand-new node's first primary timeout is this much longer (processes of a
# new cluster start up to ~1 s apart on a loaded machine; a view change then would be for nothing)
VIEW_CHANGE_RESEND_TICKS: Final = 10  # re-send StartViewChange / DoViewChange / StartView (rule 11)
VIEW_CHANGE_TIMEOUT_TICKS: Final = 40  # give up on a view whose primary stays silent: try view + 1
VIEW_CHANGE_TIMEOUT_MAX_TICKS: Final = 400  # backoff cap for the above
PREPARE_RESEND_TICKS: Final = 10  # primary re-sends prepares a backup has not acknowledged ...
PREPARE_RESEND_BACKOFF_MAX: Final = 16  # ... and, while it still does not, again after 2, 4, ... up to 16 periods
REPAIR_TICKS: Final = 10  # a backup re-asks GetState while it is missing ops
RECOVERY_RESEND_TICKS: Final = 10  # a recovering replica re-sends Recovery
RECOVERY_STALL_ROUNDS: Final = 4  # ... and starts over if the primary's snapshot made no progress for this many
QUORUM_TIMEOUT_TICKS: Final = 30  # primary answers `unavailable` if it heard from < f backups within this
# ... and after this many such timeouts without a quorum it stops its heartbeats (check-quorum), so that backups
# that can still hear it (it can send but not receive) lose it and replace it
PRIMARY_QUIET_AFTER_QUORUM_TIMEOUTS: Final = 2

# --- client session (zvsr.protocol.client_session, driven by zvsr.client and the proxy), in driver ticks ---
REQUEST_TIMEOUT_TICKS: Final = 20  # re-send a request that has had no answer for this long ...
REQUEST_TIMEOUT_MAX_TICKS: Final = 160  # ... backing off up to this, so a struggling cluster is not flooded
RETRY_AFTER_ERROR_TICKS: Final = 5  # after a retryable Error (busy, unavailable, view_change): retry this soon
# A RelaySession (client via proxies) sends again only after this long without an answer from its relay: long
# next to a relay's usual answer, so a live relay sees one copy (the relay retries towards the replicas itself).
RELAY_QUIET_TICKS: Final = 250

# --- sizes ---
OPERATION_BYTES_MAX: Final = 64 * 1024  # one client operation (opaque bytes)
RESULT_BYTES_MAX: Final = 1024 * 1024  # one application result
PREPARE_ENTRIES_MAX: Final = 256  # entries in one Prepare (batching bound, by count)
PREPARE_BYTES_MAX: Final = 1024 * 1024  # operation bytes in one Prepare (batching bound, by size)
NEW_STATE_ENTRIES_MAX: Final = 1024  # entries in one NewState chunk; the requester asks again for more
NEW_STATE_BYTES_MAX: Final = 4 * 1024 * 1024
PIPELINE_OPS_MAX: Final = 4096  # prepared-but-uncommitted ops at the primary; beyond, requests wait in queue
REQUEST_QUEUE_MAX: Final = 8192  # requests waiting for pipeline room; beyond, `busy`
# Client sessions remembered (§4.1 client table), least recently executed evicted first; as many evicted
# client_ids again are remembered as expired, so their retries get `session_expired`, never a 2nd execution.
CLIENT_TABLE_MAX: Final = 100_000
# --- snapshots and log truncation ---
SNAPSHOT_INTERVAL_OPS: Final = 10_000  # a replica snapshots its app state every this many committed ops
# ... and then drops the log before its previous snapshot: it keeps between one and two intervals of log (plus
# the uncommitted tail), so a peer up to an interval behind catches up from the log, not a snapshot.
SNAPSHOT_CHUNK_BYTES: Final = 1024 * 1024  # snapshot bytes in one SnapshotChunk
SNAPSHOT_BYTES_MAX: Final = 2**32  # one snapshot (app state + client table); a bigger one is refused
SNAPSHOT_PIN_TICKS: Final = 500  # a snapshot being downloaded is kept (with the log after it) this long after
# the downloader last asked for a chunk, so a slow download never chases a primary that keeps truncating
# DoViewChange and StartView carry the ops after the sender's commit_number and at most this many committed ops
# before them (not the whole kept log): about what a 30 kbit/s link carries in a view-change timeout. A backup
# whose commit_number is behind that fetches the rest by state transfer; a new primary skips the view. Commit
# numbers of live replicas differ by about one Prepare batch (PREPARE_ENTRIES_MAX), so the usual case needs
# neither.
VIEW_CHANGE_COMMITTED_OPS_MAX: Final = 256
# RecoveryResponse carries the kept log: bounded by the snapshot interval above.
LOG_ENTRIES_MAX: Final = 4_000_000  # entries in one message
MESSAGE_BYTES_MAX: Final = 256 * 1024 * 1024  # one encoded message (MAXMSGSIZE on bound sockets)
CLIENT_MESSAGE_BYTES_MAX: Final = OPERATION_BYTES_MAX + 1024  # one encoded client request (or RequestBatch)
BATCH_MESSAGES_MAX: Final = 256  # client messages in one RequestBatch / ReplyBatch (zvsr.wire.batch)
ERROR_MESSAGE_CHARS_MAX: Final = 1024
# Operations nested deeper are refused before they reach the app (zvsr.apps.adapter): msgpack decodes values
# nested ~1000 deep, beyond what a recursive app (and Python's recursion limit, which depends on the driver's
# stack depth, hence on the replica) handles deterministically.
OPERATION_NESTING_MAX: Final = 64
# Frames up to this many bytes are decoded in one msgpack call (fast; at worst ~60 bytes of memory per input
# byte, so a few MiB), bigger ones field by field (zvsr.wire.unpack). Above every client request and every
# ordinary Prepare, so the hot path takes the fast call.
STREAM_DECODE_ABOVE: Final = 128 * 1024

# --- durable storage (zvsr.storage) ---
SUPERBLOCK_COPY_BYTES_MAX: Final = 4096  # a superblock copy is ~150 bytes; a bigger file is not a superblock

# --- identities ---
REPLICAS_MAX: Final = 15  # configurations of 1..15 replicas (f = (n - 1) // 2)
# A member's address in a configuration (opaque to the core: the runtime's endpoints, encoded).
MEMBER_ADDRESS_BYTES_MAX: Final = 2048
REPLICA_ID_MAX: Final = 2**32 - 1  # replica ids are stable and never reused (zvsr.protocol.membership)
# An encoded configuration: a header, and per member its id and address (StartEpoch, snapshots).
MEMBERSHIP_BYTES_MAX: Final = 64 + REPLICAS_MAX * (6 + MEMBER_ADDRESS_BYTES_MAX) + 2 + REPLICAS_MAX * 4
ID_MAX: Final = 2**64 - 1  # client_id, request_number, op_number, view, cluster, nonce are unsigned 64-bit

# --- client proxy (zvsr.runtime.proxy) ---
PROXY_SESSIONS_MAX: Final = 65_536  # client sessions remembered (zvsr client_ids + legacy peers); LRU-evicted
PROXY_SESSION_IDLE_MS: Final = 600_000  # a session without a request for this long is forgotten
PROXY_IN_FLIGHT_MAX: Final = 8192  # relayed requests awaiting an answer; beyond, new requests get `busy`
PROXY_FRAME_BYTES_MAX: Final = 1024 * 1024  # frontend MAXMSGSIZE: bigger frames cost the sender its connection
PROXY_DRAIN_MAX: Final = 256  # messages taken from one socket before looking at the others (fairness)
PROXY_BATCH_SENDERS_MAX: Final = 65_536  # client routes answered in ReplyBatches (they sent a RequestBatch); LRU
PROXY_BACKEND_SNDHWM: Final = 4096  # messages queued towards one replica; beyond, the send is dropped (retried)
PROXY_SWEEP_MS: Final = 1000  # how often idle sessions are looked for
PROXY_EVICTION_SCAN_MAX: Final = 8  # sessions looked at, oldest first, for an idle one to evict when full
# The proxy asks the replicas for their configuration (status query) at most this often when something says it
# changed (a heartbeat of a later epoch, a Redirect to an unknown replica), and anyway this often.
PROXY_MEMBERSHIP_ASK_MS: Final = 100
PROXY_MEMBERSHIP_POLL_MS: Final = 5000
PROXY_CATCH_UP_TICKS_MAX: Final = 1000  # ticks run at once after a stall; beyond, deadlines are late, not spun
# Default `request_timeout_ms` of a cluster file (zvsr.runtime.cluster_config): a request relayed by the proxy
# that has no result for this long is answered `timeout` (it may or may not have executed).
PROXY_REQUEST_TIMEOUT_MS: Final = 5000
BAD_INPUT_LOG_INTERVAL_MS: Final = 10_000  # at most one warning per reason per interval; the rest are counted
HEARTBEAT_MESSAGE_BYTES_MAX: Final = 1024  # MAXMSGSIZE of a heartbeat SUB: a Commit is ~70 bytes
CLIENT_REPLY_BYTES_MAX: Final = RESULT_BYTES_MAX + 1024  # one encoded Reply / Redirect / Error
ZMTP_HEARTBEAT_IVL_MS: Final = 1000  # ZMTP PINGs on client-side connections, so a frozen peer is noticed
ZMTP_HEARTBEAT_TIMEOUT_MS: Final = 3000  # ... and its connection dropped: queued sends then fail fast

# --- Python client (zvsr.client) ---
CLIENT_TICK_MS: Final = 10  # the client's retry clock
# A direct client (Client(replicas=...)) asks the replicas for their configuration at most this often, when a
# Redirect names a replica it does not know or a request goes unanswered (reconfiguration).
CLIENT_MEMBERSHIP_ASK_MS: Final = 500
CLIENT_TIMEOUT_MS: Final = 5000  # default time a call may take before it raises Timeout
CLIENT_DIRECT_RETRY_MS: Final = 200  # direct to replicas: re-send to all after this long without an answer
CLIENT_DIRECT_RETRY_MAX_MS: Final = 1600  # ... doubling (with jitter) up to this
# Via proxies, which retry toward the replicas themselves and always answer: a request is sent again (to the
# next proxy) only after this long without any answer — the loss of a proxy that restarted with it in flight.
CLIENT_PROXY_QUIET_MS: Final = 2500
CLIENT_SNDHWM: Final = 1000  # messages queued towards one endpoint (replica or proxy)
# Calls one AsyncClient has in flight at once through proxies, each on a session (client_id) of its own; they are
# sent in RequestBatches (zvsr.client_pipeline). More calls wait for one of these to end.
CLIENT_PIPELINE_MAX: Final = 256

# --- replica node (zvsr.runtime.node) ---
NODE_DRAIN_MAX: Final = 256  # messages taken from one socket per wake-up before the others get their turn
NODE_TICKS_CATCH_UP_MAX: Final = 10  # missed ticks run at once after a stall; older ones are dropped (liveness)
# Messages queued towards one peer (DEALER SNDHWM); beyond, sends are dropped and the protocol re-sends. At least
# PIPELINE_OPS_MAX, so a full pipeline of unbatched Prepares fits without loss.
NODE_PEER_SNDHWM: Final = 8192
NODE_HEARTBEAT_SNDHWM: Final = 16  # PUB queue per subscriber: heartbeats are periodic and conflated anyway
NODE_CLIENT_SNDHWM: Final = 1000  # answers queued towards one client connection; beyond, dropped (it retries)
NODE_CLIENT_ROUTES_MAX: Final = 65_536  # client_id -> where to send its answers (LRU); beyond, the oldest go
NODE_RECONNECT_IVL_MS: Final = 100  # DEALER / SUB reconnect interval towards a peer that is down
NODE_RECONNECT_IVL_MAX_MS: Final = 1000  # ... backing off up to this
# Replica ids whose endpoints a node remembers (zvsr.runtime.members.AddressBook): the cluster file's and those of
# the configurations it was told of; a configuration has at most REPLICAS_MAX members, so this holds several.
NODE_ADDRESS_BOOK_MAX: Final = 8 * REPLICAS_MAX
# A replica that lost its disk asks the replicas it knows for the current configuration (status query) this
# long before it starts Recovery in the configuration the answers name (or the file's first one if none answers).
NODE_RECOVERY_MEMBERSHIP_TIMEOUT_MS: Final = 2000
ZMTP_HEARTBEAT_TTL_MS: Final = 3000  # tells the remote end to drop our connection after this much silence
CLIENT_ENVELOPE_FRAMES_MAX: Final = 8  # frames of a client message: routing frames, delimiter, payload
LOG_WARNING_REASONS_MAX: Final = 1024  # distinct rate-limited warning reasons tracked at once
STATUS_ANSWER_BYTES_MAX: Final = 1024 * 1024  # one encoded status answer (zvsr.wire.admin)
LOG_DETAIL_CHARS_MAX: Final = 512  # peer-controlled text in one rate-limited warning (decode errors quote input)

# --- watch stream (zvsr.runtime.watch_publisher publishes, zvsr.watch subscribes; docs/protocol.md §12) ---
NODE_WATCH_SNDHWM: Final = 4096  # watch XPUB queue per subscriber; beyond, ops are dropped (the watcher resyncs)
WATCH_SUBSCRIPTION_BYTES_MAX: Final = 1024  # watch XPUB MAXMSGSIZE: it only reads subscriptions
WATCH_TOPICS_MAX: Final = 1024  # distinct subscribed topics a replica tracks (to know whether anyone watches)
WATCH_MESSAGE_BYTES_MAX: Final = OPERATION_BYTES_MAX + RESULT_BYTES_MAX + 1024  # one published op, encoded
WATCH_STEP_OPS_MAX: Final = 2 * PIPELINE_OPS_MAX  # ops recorded in one reactor step; beyond, none published
WATCH_COMMIT_INTERVAL_MS: Final = 200  # a replica publishes its commit_number (WatchCommit) this often
SNAPSHOT_ANSWER_BYTES_MAX: Final = 16 * 1024 * 1024  # one encoded snapshot answer; beyond, `too_large`
WATCH_GAP_MS: Final = 500  # a missing op not received from any replica within this long: ask their history
WATCH_JOIN_MS: Final = 1000  # a new watcher waits this long at most for a first message before its snapshot
WATCH_SNAPSHOT_GRACE_MS: Final = 100  # after a first snapshot (history) answer, wait this long for better ones
WATCH_SNAPSHOT_RETRY_MS: Final = 1000  # no usable snapshot (history) answer this long: ask every replica again
WATCH_PENDING_OPS_MAX: Final = 100_000  # ops buffered ahead of the watcher's state; beyond, dropped (refetched)
WATCH_DRAIN_MAX: Final = 1024  # messages a watcher takes from one socket before looking at the others
WATCH_QUERY_SNDHWM: Final = 2  # snapshot/history queries queued towards one replica (a down one keeps this many)
# The history query (types 36/37, zvsr.runtime.watch_history): each replica with a watch endpoint keeps its latest
# executed ops in memory, so a watcher can fill a gap, or resume after an op (`zvsr watch --from-op`).
WATCH_HISTORY_OPS_MAX: Final = 16_384  # executed ops a replica keeps for history queries; older ones are dropped
WATCH_HISTORY_BYTES_MAX: Final = 16 * 1024 * 1024  # ... and at most this many bytes of operations and results
WATCH_HISTORY_CHUNK_OPS_MAX: Final = 1024  # ops in one history answer
WATCH_HISTORY_CHUNK_BYTES: Final = 1024 * 1024  # an answer takes no further op past this many bytes (always one)
WATCH_HISTORY_ANSWER_BYTES_MAX: Final = WATCH_HISTORY_CHUNK_BYTES + WATCH_MESSAGE_BYTES_MAX  # one encoded answer

# --- operator commands (zvsr status: zvsr.runtime.status; zvsr start: zvsr.runtime.launcher) ---
STATUS_TIMEOUT_MS: Final = 1000  # `zvsr status` shows a replica as unreachable after this long without an answer
# `zvsr member add|remove|replace`: how long the reconfiguration request may take (it commits like any op, but
# the primary refuses it while earlier ops are still in flight, and the client retries).
MEMBER_TIMEOUT_MS: Final = 10_000
# `zvsr member transfer N` (zvsr.runtime.transfer): one transfer answer (a UTF-8 error message of at most
# ERROR_MESSAGE_CHARS_MAX characters in a small map), and how often the new primary's status is asked meanwhile.
TRANSFER_ANSWER_BYTES_MAX: Final = 4 * ERROR_MESSAGE_CHARS_MAX + 64
TRANSFER_POLL_MS: Final = 10
LAUNCHER_READY_TIMEOUT_S: Final = 30.0  # `zvsr start` fails if no primary and proxy answer within this
LAUNCHER_READY_QUERY_TIMEOUT_MS: Final = 300  # ... asking each replica and the proxy with this timeout per round
LAUNCHER_READY_POLL_S: Final = 0.05  # ... and pausing this long between rounds (no event to wait for)
LAUNCHER_SUPERVISE_INTERVAL_S: Final = 0.2  # how often `zvsr start` checks that a majority and the proxy live
LAUNCHER_STOP_GRACE_S: Final = 5.0  # after SIGTERM, children get this long to exit before SIGKILL

# --- backup and restore (zvsr backup: zvsr.runtime.backup, zvsr.runtime.backup_query) ---
BACKUP_TIMEOUT_MS: Final = 10_000  # `zvsr backup` gives up on a replica that does not answer a query this long
BACKUP_PIN_MS: Final = 30_000  # a snapshot being backed up stays served this long after its last chunk query
BACKUP_PINS_MAX: Final = 2  # snapshots a replica keeps for backups in progress (each one snapshot's bytes)
BACKUP_ANSWER_BYTES_MAX: Final = SNAPSHOT_CHUNK_BYTES + 1024  # one encoded backup chunk (a client's MAXMSGSIZE)
BACKUP_RESTARTS_MAX: Final = 3  # `zvsr backup` starts over this often when its snapshot is `gone`

# --- deterministic simulator (zvsr.sim) ---
SIM_TRACE_EVENTS_KEPT: Final = 400  # the last events a violation report prints (a ring: older ones are dropped)
SIM_CLOCK_RATE_SPREAD: Final = 0.05  # each simulated replica's clock runs at 1 ± this of virtual time
SIM_LIVENESS_MS_MAX: Final = 120_000  # virtual time the liveness phase may take to commit after faults stop

# --- leases (zvsr.apps.coordination), in milliseconds of cluster time (zvsr.apps.base.OpContext) ---
LEASE_TTL_MS_MIN: Final = 1  # a lease_grant's ttl_ms below this is `out_of_range` ...
LEASE_TTL_MS_MAX: Final = 24 * 60 * 60 * 1000  # ... and above this (1 day): longer-lived data needs no lease
LEASES_MAX: Final = 100_000  # live leases per cluster; a lease_grant beyond gives `lease_limit`
LEASE_KEYS_MAX: Final = 10_000  # keys + locks attached to one lease; attaching one more gives `lease_keys_limit`
# ... and their names, counted as msgpack str (UTF-8 bytes + 5), at most this many bytes, also `lease_keys_limit`:
# the names a lease_revoke, lease_ttl or lease_expire lists then always fit in one result (RESULT_BYTES_MAX).
LEASE_NAMES_BYTES_MAX: Final = 512 * 1024
LEASE_LOCK_DELAY_MS_MAX: Final = 60_000  # an expired lease's locks stay unavailable this long at most (lock delay)
# Leases one lease_expire op ends (smallest deadline first; also no more than LEASE_NAMES_BYTES_MAX of key names):
# the rest stay due, and the primary proposes another lease_expire for them.
LEASE_EXPIRE_BATCH_MAX: Final = 1_000

# --- lease holders (zvsr.client) ---
# Replicas' clocks may run up to 5% apart in rate (the simulator draws each replica's rate within the same bound,
# SIM_CLOCK_RATE_SPREAD), so cluster time may pass up to this much faster than a holder's clock measures: a holder
# assumes its lease for at most ttl × (1 - LEASE_CLOCK_DRIFT), measured from the send time of the last keepalive
# (or grant) that was acknowledged.
LEASE_CLOCK_DRIFT: Final = 0.05

# --- linearizable reads without a log entry (zvsr.protocol.reads) ---
READ_MODE_LOG: Final = "log"  # every op goes through the log, reads too
READ_MODE_READ_INDEX: Final = "read_index"  # a read waits for one quorum confirmation round and the read index
READ_MODE_LEASE: Final = "lease"  # read_index, plus the primary serves alone while it holds a read lease
READ_MODES: Final = (READ_MODE_LOG, READ_MODE_READ_INDEX, READ_MODE_LEASE)
READ_MODE_DEFAULT: Final = READ_MODE_READ_INDEX
READS_PENDING_MAX: Final = 8192  # reads waiting for their confirmation round or read index; beyond, `busy`
# Confirmation rounds a primary lets be unconfirmed before a read waits for one instead of starting one on a
# Commit (rounds on Prepares are free): bounds the Commits reads add per round trip (a slow link queues them).
READ_ROUNDS_IN_FLIGHT_MAX: Final = 1
READ_ROUNDS_KEPT: Final = 64  # lease mode: send times of the latest confirmation rounds (older echoes grant none)
# The clock-rate bound ρ a read lease allows for: a backup's promise, P of its own clock (a primary timeout), lasts
# at least P / (1 + ρ) of real time, and the primary's clock reads at most d (1 + ρ)... at least d (1 - ρ) over a
# real time d, so the primary holds the lease for P (1 - ρ) / (1 + ρ) of its own clock (docs/design.md, "Reads").
# The simulator draws clock rates within SIM_CLOCK_RATE_SPREAD of true time: it must not exceed this.
READ_LEASE_CLOCK_DRIFT: Final = 0.05

# --- chaos runs (zvsr chaos: zvsr.chaos), in seconds of wall time ---
CHAOS_CLIENTS: Final = 4  # workload clients writing through the proxy during a run
CHAOS_FAULT_S_MIN: Final = 1.0  # each fault lasts between these two (drawn per fault from the seed)
CHAOS_FAULT_S_MAX: Final = 3.0
CHAOS_START_TIMEOUT_S: Final = 60.0  # the cluster must have a primary and acknowledge a write within this
CHAOS_RECOVERY_TIMEOUT_S: Final = 30.0  # after a heal, no acknowledged write within this is a failed run
CHAOS_SETTLE_TIMEOUT_S: Final = 30.0  # ... nor every replica normal in one view again within this
CHAOS_VIEW_SETTLE_S: Final = 1.5  # views are read this long after the recovery, to count view changes a heal made
CHAOS_COMMAND_TIMEOUT_S: Final = 10.0  # one `ip` / `tc` command, or a relay's control answer

# Simulator session churn (`zvsr sim --churn`): the client table's size, and how late a late copy of a client's
# request arrives (virtual ms): long enough for many sessions to register and evict each other meanwhile.
SIM_CHURN_TABLE_MAX: Final = 3
SIM_LATE_COPY_MS_MIN: Final = 200
SIM_LATE_COPY_MS_MAX: Final = 2000
