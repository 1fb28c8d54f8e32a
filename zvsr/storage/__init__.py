"""Durable storage of a replica: the write-ahead log (`wal`) and the superblock (`superblock`).

Plain files and fsync only (no ZeroMQ, no threads). The driver's step 1 of the core's contract
(``zvsr.protocol.ready``) maps onto it: a `PersistLog` is `WriteAheadLog.persist_log`, a `PersistViewState` is a
`Superblock.write`, and one `WriteAheadLog.sync` per step makes the step's log records durable (group commit)
before anything of the step is sent.
"""

from zvsr.storage.superblock import Superblock, SuperblockCorruption, SuperblockState
from zvsr.storage.wal import WalCorruption, WalError, WriteAheadLog

__all__ = [
    "Superblock",
    "SuperblockCorruption",
    "SuperblockState",
    "WalCorruption",
    "WalError",
    "WriteAheadLog",
]
