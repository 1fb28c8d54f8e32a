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
HEARTBEAT_TICKS: Final = 5  # primary sends Commit (heartbeat) when it sent nothing else for this long
PRIMARY_TIMEOUT_TICKS: Final = 20  # a backup suspects the primary after this long without hearing it
PRIMARY_TIMEOUT_JITTER_TICKS: Final = 10  # random extra, so backups don't all start view changes at once
VIEW_CHANGE_RESEND_TICKS: Final = 10  # re-send StartViewChange / DoViewChange / StartView (rule 11)
VIEW_CHANGE_TIMEOUT_TICKS: Final = 40  # give up on a view whose primary stays silent: try view + 1
VIEW_CHANGE_TIMEOUT_MAX_TICKS: Final = 400  # backoff cap for the above
PREPARE_RESEND_TICKS: Final = 10  # primary re-sends prepares a backup has not acknowledged
REPAIR_TICKS: Final = 10  # a backup re-asks GetState while it is missing ops
RECOVERY_RESEND_TICKS: Final = 10  # a recovering replica re-sends Recovery
QUORUM_TIMEOUT_TICKS: Final = 30  # primary answers `unavailable` if it heard from < f backups within this

# --- sizes ---
OPERATION_BYTES_MAX: Final = 64 * 1024  # one client operation (opaque bytes)
RESULT_BYTES_MAX: Final = 1024 * 1024  # one application result
PREPARE_ENTRIES_MAX: Final = 256  # entries in one Prepare (batching bound, by count)
PREPARE_BYTES_MAX: Final = 1024 * 1024  # operation bytes in one Prepare (batching bound, by size)
NEW_STATE_ENTRIES_MAX: Final = 1024  # entries in one NewState chunk; the requester asks again for more
NEW_STATE_BYTES_MAX: Final = 4 * 1024 * 1024
PIPELINE_OPS_MAX: Final = 4096  # prepared-but-uncommitted ops at the primary; beyond, requests wait in queue
REQUEST_QUEUE_MAX: Final = 8192  # requests waiting for pipeline room; beyond, `busy`
# Until snapshots and log truncation exist, DoViewChange / StartView / RecoveryResponse carry the whole log.
LOG_ENTRIES_MAX: Final = 4_000_000  # entries in one message
MESSAGE_BYTES_MAX: Final = 256 * 1024 * 1024  # one encoded message (MAXMSGSIZE on bound sockets)
CLIENT_MESSAGE_BYTES_MAX: Final = OPERATION_BYTES_MAX + 1024  # one encoded client request
ERROR_MESSAGE_CHARS_MAX: Final = 1024

# --- identities ---
REPLICAS_MAX: Final = 15  # configurations of 1..15 replicas (f = (n - 1) // 2)
ID_MAX: Final = 2**64 - 1  # client_id, request_number, op_number, view, cluster, nonce are unsigned 64-bit
