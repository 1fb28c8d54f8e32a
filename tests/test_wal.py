"""The durable log and the superblock (zvsr.storage): replay, truncation, torn-tail repair, corruption refusal."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from zvsr.protocol.messages import LogEntry
from zvsr.storage import (
    Superblock,
    SuperblockCorruption,
    SuperblockState,
    WalCorruption,
    WalError,
    WriteAheadLog,
)
from zvsr.storage.superblock import COPY_NAMES
from zvsr.storage.wal import (
    _BATCH_RECORD_FILL,
    HEADER_BYTES,
    KIND_BASE,
    KIND_BATCH,
    KIND_ENTRY,
    KIND_ENTRY_V1,
    WAL_NAME,
    SnapshotRef,
    _batch_record,
    _entry_record,
    chain_of,
    chain_of_v1,
    encode_record,
)


def entry(op_number: int, view: int = 1, operation: bytes | None = None) -> LogEntry:
    return LogEntry(
        view=view,
        op_number=op_number,
        client_id=1000 + op_number,
        request_number=op_number,
        operation=operation if operation is not None else b"op-%d" % op_number,
        timestamp=op_number * 10,
    )


def entries(first: int, last: int, view: int = 1) -> list[LogEntry]:
    return [entry(op, view) for op in range(first, last + 1)]


def reopen(path: Path) -> tuple[WriteAheadLog, list[LogEntry]]:
    return WriteAheadLog.open(path, fsync=False)


def write_log(path: Path, *steps: tuple[int, list[LogEntry]]) -> list[int]:
    """Persist each step and sync; returns the file size after each step (record boundaries)."""
    wal, _ = WriteAheadLog.open(path)
    sizes = []
    for first, batch in steps:
        wal.persist_log(first, batch)
        wal.sync()
        sizes.append((path / WAL_NAME).stat().st_size)
    wal.close()
    return sizes


def prepares(first: int, last: int, size: int = 4) -> list[tuple[int, list[LogEntry]]]:
    """Ops first..last persisted as a busy replica does: one step (one batch record) per Prepare of `size`."""
    return [(op, entries(op, min(op + size - 1, last))) for op in range(first, last + 1, size)]


def flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


# --- write-ahead log ------------------------------------------------------------------------------------------


def test_a_new_log_is_empty_and_appends_replay_in_order(tmp_path: Path) -> None:
    wal, log = WriteAheadLog.open(tmp_path)
    assert log == [] and wal.last_op_number == 0 and wal.repaired_bytes == 0
    wal.persist_log(1, entries(1, 3))
    wal.persist_log(4, [entry(4, operation=b"")])
    wal.persist_log(5, [])  # nothing to do
    wal.sync()
    assert wal.entries == [*entries(1, 3), entry(4, operation=b"")] and wal.last_op_number == 4
    wal.close()
    wal.close()  # idempotent
    again, log = reopen(tmp_path)
    assert log == [*entries(1, 3), entry(4, operation=b"")]
    assert again.entries == log and again.last_op_number == 4 and again.repaired_bytes == 0
    again.persist_log(5, [entry(5)])  # appending continues the chain across a restart
    again.close()
    assert reopen(tmp_path)[1][-1] == entry(5)


def test_close_syncs_what_was_buffered(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.persist_log(1, entries(1, 2))
    assert (tmp_path / WAL_NAME).stat().st_size == 0  # persist_log only buffers
    wal.close()
    assert reopen(tmp_path)[1] == entries(1, 2)
    with pytest.raises(WalError, match="closed"):
        wal.persist_log(3, [entry(3)])


def test_truncate_then_append_replays_to_the_new_log(tmp_path: Path) -> None:
    new_tail = entries(3, 6, view=2)
    write_log(tmp_path, (1, entries(1, 5)), (3, new_tail))
    wal, log = reopen(tmp_path)
    assert log == [*entries(1, 2), *new_tail]
    wal.persist_log(2, [])  # a pure truncation
    wal.close()
    assert reopen(tmp_path)[1] == entries(1, 1)


def test_truncate_to_empty_and_rewrite(tmp_path: Path) -> None:
    write_log(tmp_path, (1, entries(1, 3)), (1, entries(1, 2, view=4)))
    assert reopen(tmp_path)[1] == entries(1, 2, view=4)


def test_an_identical_prefix_is_not_rewritten(tmp_path: Path) -> None:
    sizes = write_log(tmp_path, (1, entries(1, 5)), (1, entries(1, 5)))
    assert sizes[0] == sizes[1]  # a StartView carrying the same log writes nothing
    write_log(tmp_path, (1, entries(1, 6)))  # extends: only op 6 is appended, no truncation
    wal, log = reopen(tmp_path)
    assert log == entries(1, 6)
    wal.persist_log(2, entries(2, 4))  # same entries, shorter: the log now ends at 4
    wal.close()
    assert reopen(tmp_path)[1] == entries(1, 4)


@pytest.mark.parametrize(("first", "batch"), [(3, [entry(3)]), (0, [entry(0)]), (1, [entry(1), entry(3)])])
def test_persist_log_rejects_gaps_and_misnumbered_entries(
    tmp_path: Path, first: int, batch: list[LogEntry]
) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, fsync=False)
    wal.persist_log(1, [entry(1)])
    with pytest.raises(WalError):
        wal.persist_log(first, batch)
    assert wal.entries == [entry(1)]  # unchanged
    wal.close()


def test_a_torn_last_record_is_repaired_at_every_cut(tmp_path: Path) -> None:
    sizes = write_log(tmp_path, (1, entries(1, 3)), (4, [entry(4)]))
    full = (tmp_path / WAL_NAME).read_bytes()
    good, end = sizes[0], sizes[1]
    for cut in range(good, end):
        (tmp_path / WAL_NAME).write_bytes(full[:cut])
        wal, log = reopen(tmp_path)
        assert log == entries(1, 3), cut
        assert wal.repaired_bytes == cut - good
        assert (tmp_path / WAL_NAME).stat().st_size == good  # truncated to the last good record
        wal.persist_log(4, [entry(4, view=9)])  # appending afterwards works
        wal.close()
        assert reopen(tmp_path)[1] == [*entries(1, 3), entry(4, view=9)]


def test_a_torn_truncate_record_is_repaired(tmp_path: Path) -> None:
    sizes = write_log(tmp_path, (1, entries(1, 3)), (2, []))
    full = (tmp_path / WAL_NAME).read_bytes()
    (tmp_path / WAL_NAME).write_bytes(full[: sizes[1] - 1])
    wal, log = reopen(tmp_path)
    assert log == entries(1, 3) and wal.repaired_bytes == sizes[1] - 1 - sizes[0]
    wal.close()


@pytest.mark.parametrize("where", ["length", "checksum", "payload"])
def test_a_flipped_bit_in_the_last_record_is_repaired(tmp_path: Path, where: str) -> None:
    sizes = write_log(tmp_path, (1, entries(1, 3)), (4, [entry(4)]))
    offset = sizes[0] + {"length": 3, "checksum": 4, "payload": HEADER_BYTES + 2}[where]
    flip_bit(tmp_path / WAL_NAME, offset)
    wal, log = reopen(tmp_path)
    assert log == entries(1, 3) and wal.repaired_bytes == sizes[1] - sizes[0]
    wal.close()


@pytest.mark.parametrize("where", ["length", "checksum", "payload"])
def test_a_flipped_bit_in_a_middle_record_is_corruption(tmp_path: Path, where: str) -> None:
    # Rule: a damaged record followed by any intact record is damage in the middle of the synced log, which a
    # repair would silently shorten — refuse instead. Only a damaged *last* record is a torn tail.
    sizes = write_log(tmp_path, (1, [entry(1)]), (2, [entry(2)]), (3, [entry(3)]))
    offset = sizes[0] + {"length": 3, "checksum": 4, "payload": HEADER_BYTES + 2}[where]
    before = (tmp_path / WAL_NAME).read_bytes()
    flip_bit(tmp_path / WAL_NAME, offset)
    with pytest.raises(WalCorruption, match=f"offset {sizes[0]}"):
        reopen(tmp_path)
    assert len((tmp_path / WAL_NAME).read_bytes()) == len(before)  # nothing was "repaired"


def _append_raw(path: Path, record: bytes) -> None:
    with open(path / WAL_NAME, "ab") as file:
        file.write(record)


def test_an_intact_record_that_breaks_the_chain_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, (1, entries(1, 2)))
    bad = entry(3)
    _append_raw(tmp_path, encode_record([KIND_ENTRY, 1, 3, bad.client_id, 3, bad.operation, 30, bytes(16)]))
    with pytest.raises(WalCorruption, match="hash chain"):
        reopen(tmp_path)


def test_a_log_spliced_from_another_log_breaks_the_chain(tmp_path: Path) -> None:
    # Op 3 recorded with the chain of a *different* op 2: each record intact, the log is not this one's.
    write_log(tmp_path, (1, entries(1, 2)))
    other = chain_of(chain_of(bytes(16), entry(1)), entry(2, view=7))
    e3 = entry(3)
    chain = chain_of(other, e3)
    _append_raw(tmp_path, encode_record([KIND_ENTRY, 1, 3, e3.client_id, 3, e3.operation, e3.timestamp, chain]))
    with pytest.raises(WalCorruption, match="offset"):
        reopen(tmp_path)


def test_an_intact_record_with_the_wrong_op_number_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, (1, entries(1, 2)))
    e5 = entry(5)
    _append_raw(tmp_path, encode_record([KIND_ENTRY, 1, 5, e5.client_id, 5, e5.operation, 50, bytes(16)]))
    with pytest.raises(WalCorruption, match="op_number 5, expected 3"):
        reopen(tmp_path)


def _v1_record(entry: LogEntry, chain: bytes) -> bytes:
    """An entry record as versions before cluster time wrote it: kind 1, no timestamp, the old chain."""
    return encode_record(
        [KIND_ENTRY_V1, entry.view, entry.op_number, entry.client_id, entry.request_number, entry.operation, chain]
    )


def test_a_log_written_before_cluster_time_opens_with_timestamp_0_and_grows_with_stamped_records(
    tmp_path: Path,
) -> None:
    """An upgraded replica finds kind-1 records (no timestamp, the old chain) and opens them as they are; what
    it appends next is kind 4, chained after them; and the mixed file opens again."""
    old = [replace(e, timestamp=0) for e in entries(1, 3)]
    chain = bytes(16)
    for e in old:
        chain = chain_of_v1(chain, e)
        _append_raw(tmp_path, _v1_record(e, chain))
    wal, log = reopen(tmp_path)
    assert log == old
    wal.persist_log(4, entries(4, 5))
    wal.sync()
    wal.close()
    again, log = reopen(tmp_path)
    assert log == old + entries(4, 5) and log[-1].timestamp == 50
    again.close()


def test_a_kind_1_record_is_checked_against_the_old_chain(tmp_path: Path) -> None:
    """A kind-1 record whose chain is the new formula's (or garbage) does not verify: each kind has its own."""
    write_log(tmp_path, (1, entries(1, 2)))
    stale = replace(entry(3), timestamp=0)
    wal, _ = reopen(tmp_path)
    wal.close()
    previous = chain_of(chain_of(bytes(16), entry(1)), entry(2))
    _append_raw(tmp_path, _v1_record(stale, chain_of(previous, stale)))
    with pytest.raises(WalCorruption, match="hash chain"):
        reopen(tmp_path)


def test_a_truncation_beyond_the_end_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, (1, entries(1, 2)))
    _append_raw(tmp_path, encode_record([2, 7]))
    with pytest.raises(WalCorruption, match="outside the log"):
        reopen(tmp_path)


def test_an_oversized_length_in_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    sizes = write_log(tmp_path, (1, entries(1, 2)))
    _append_raw(tmp_path, b"\xff\xff\xff\xff" + bytes(40))
    wal, log = reopen(tmp_path)
    assert log == entries(1, 2) and wal.repaired_bytes == 44
    assert (tmp_path / WAL_NAME).stat().st_size == sizes[0]
    wal.close()


def test_without_fsync_nothing_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append("fdatasync"))
    wal, _ = WriteAheadLog.open(tmp_path, fsync=False)
    wal.persist_log(1, entries(1, 2))
    wal.sync()
    wal.close()
    assert calls == []
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.persist_log(3, [entry(3)])
    wal.persist_log(4, [entry(4)])
    wal.sync()  # group commit: one fdatasync for both records
    assert calls == ["fdatasync"]
    wal.close()


def test_a_failed_fdatasync_makes_the_log_unusable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.persist_log(1, [entry(1)])

    def fail(fd: int) -> None:
        raise OSError(5, "EIO")

    monkeypatch.setattr(os, "fdatasync", fail)
    with pytest.raises(WalError, match="fdatasync failed"):
        wal.sync()
    with pytest.raises(WalError, match="unusable"):
        wal.persist_log(2, [entry(2)])
    wal.close()  # still closes the file


# --- superblock -----------------------------------------------------------------------------------------------


def state(view: int, commit: int = 0) -> SuperblockState:
    return SuperblockState(
        view_number=view, last_normal_view=view, commit_number=commit, epoch=0, cluster_id=7, replica=1
    )


def test_a_fresh_directory_has_no_superblock(tmp_path: Path) -> None:
    assert Superblock.read(tmp_path) is None


def test_superblock_writes_alternate_and_the_newest_wins(tmp_path: Path) -> None:
    first = Superblock.write(tmp_path, state(1))
    assert first.sequence == 1 and Superblock.read(tmp_path) == first
    second = Superblock.write(tmp_path, state(2, commit=5))
    assert second.sequence == 2 and Superblock.read(tmp_path) == second
    assert all((tmp_path / name).exists() for name in COPY_NAMES)
    third = Superblock.write(tmp_path, state(3))
    assert Superblock.read(tmp_path) == third and third.sequence == 3
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / COPY_NAMES[0]).unlink()  # copy a held sequence 3 (writes: a, b, a)
    assert Superblock.read(tmp_path) == second


def test_a_corrupt_newest_copy_falls_back_and_is_overwritten_next(tmp_path: Path) -> None:
    older = Superblock.write(tmp_path, state(1))
    Superblock.write(tmp_path, state(2))  # to copy b
    flip_bit(tmp_path / COPY_NAMES[1], 20)
    assert Superblock.read(tmp_path) == older
    newer = Superblock.write(tmp_path, state(3))  # goes over the damaged copy, not over the valid one
    assert newer.sequence == 2 and Superblock.read(tmp_path) == newer
    flip_bit(tmp_path / COPY_NAMES[1], 20)
    assert Superblock.read(tmp_path) == older


@pytest.mark.parametrize("damage", ["flip", "empty", "garbage"])
def test_both_copies_corrupt_raises(tmp_path: Path, damage: str) -> None:
    Superblock.write(tmp_path, state(1))
    Superblock.write(tmp_path, state(2))
    for name in COPY_NAMES:
        if damage == "flip":
            flip_bit(tmp_path / name, 30)
        else:
            (tmp_path / name).write_bytes(b"" if damage == "empty" else b"\x00" * 5000)
    with pytest.raises(SuperblockCorruption, match="none is valid"):
        Superblock.read(tmp_path)


def test_one_damaged_copy_alone_raises(tmp_path: Path) -> None:
    (tmp_path / COPY_NAMES[1]).write_bytes(b"half")
    with pytest.raises(SuperblockCorruption):
        Superblock.read(tmp_path)


def test_superblock_write_fsyncs_the_file_and_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    kinds: list[str] = []

    def counting_fsync(fd: int) -> None:
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    Superblock.write(tmp_path, state(1))
    assert kinds == ["file", "dir"]  # the temporary file before the rename, the directory after
    kinds.clear()
    Superblock.write(tmp_path, state(2), fsync=False)
    assert kinds == []


def test_the_sequence_never_goes_backwards(tmp_path: Path) -> None:
    Superblock.write(tmp_path, state(1))
    Superblock.write(tmp_path, state(2))
    stale = SuperblockState(
        view_number=3, last_normal_view=3, commit_number=0, epoch=0, cluster_id=7, replica=1, sequence=0
    )
    assert Superblock.write(tmp_path, stale).sequence == 3


# --- compaction after a snapshot --------------------------------------------------------------------------------


def snapshot_ref(op_number: int) -> SnapshotRef:
    return SnapshotRef(op_number=op_number, size=10 + op_number, checksum=bytes([op_number % 256]) * 16)


def test_rebase_keeps_the_log_after_its_base_in_a_smaller_file_and_replays(tmp_path: Path) -> None:
    """Ops 1..40 written; a snapshot at 30 keeps the log after op 20 (the previous snapshot)."""
    size_before = write_log(tmp_path, *prepares(1, 40))[-1]
    wal, _ = reopen(tmp_path)
    wal.rebase(snapshot_ref(30), log_base=20)
    assert wal.log_base == 20 and wal.entries == entries(21, 40) and wal.last_op_number == 40
    wal.persist_log(41, entries(41, 42))  # appending continues the chain
    wal.close()
    assert (tmp_path / WAL_NAME).stat().st_size < size_before
    again, log = reopen(tmp_path)
    assert log == entries(21, 42) and again.log_base == 20 and again.snapshot == snapshot_ref(30)
    assert not (tmp_path / (WAL_NAME + ".tmp")).exists()


def test_entries_at_or_before_the_base_are_never_written_again(tmp_path: Path) -> None:
    write_log(tmp_path, (1, entries(1, 10)))
    wal, _ = reopen(tmp_path)
    wal.rebase(snapshot_ref(8), log_base=8)
    wal.persist_log(5, entries(5, 12))  # a StartView's log overlapping the snapshot: 5..8 are skipped
    wal.close()
    assert reopen(tmp_path)[1] == entries(9, 12)
    wal, _ = reopen(tmp_path)
    wal.persist_log(3, [])  # a truncation below the base truncates to the base
    wal.close()
    again, log = reopen(tmp_path)
    assert log == [] and again.log_base == 8 and again.last_op_number == 8


def test_a_snapshot_beyond_the_log_restarts_it_after_the_snapshot(tmp_path: Path) -> None:
    """A snapshot installed from the primary, ahead of everything this log holds."""
    write_log(tmp_path, (1, entries(1, 5)))
    wal, _ = reopen(tmp_path)
    wal.rebase(snapshot_ref(50), log_base=50)
    wal.persist_log(51, entries(51, 52, view=3))
    wal.close()
    again, log = reopen(tmp_path)
    assert again.log_base == 50 and log == entries(51, 52, view=3)


def test_a_base_record_anywhere_but_the_start_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, (1, entries(1, 2)))
    _append_raw(tmp_path, encode_record([KIND_BASE, 1, bytes(16), 1, 10, bytes(16)]))
    _append_raw(tmp_path, encode_record([KIND_ENTRY, 1, 3, 1, 1, b"x", 30, bytes(16)]))
    with pytest.raises(WalCorruption, match="base record"):
        reopen(tmp_path)


def test_a_flipped_bit_in_a_compacted_log_is_still_detected(tmp_path: Path) -> None:
    write_log(tmp_path, *prepares(1, 30))
    wal, _ = reopen(tmp_path)
    wal.rebase(snapshot_ref(20), log_base=10)
    wal.close()
    flip_bit(tmp_path / WAL_NAME, HEADER_BYTES + 200)
    with pytest.raises(WalCorruption):
        reopen(tmp_path)


def test_rebase_copies_the_kept_records_instead_of_encoding_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compaction used to re-encode a whole snapshot interval of log (~40 ms every 10 000 ops on a busy
    replica); the kept records are byte-identical, so they are copied."""
    write_log(tmp_path, (1, entries(1, 40)))
    wal, _ = reopen(tmp_path)
    before = (tmp_path / WAL_NAME).read_bytes()
    import zvsr.storage.wal as wal_module

    def no_encoding(*_: object) -> bytes:
        raise AssertionError("rebase encoded an entry again")

    monkeypatch.setattr(wal_module, "_entry_record", no_encoding)
    wal.rebase(snapshot_ref(30), log_base=20)
    wal.close()
    after = (tmp_path / WAL_NAME).read_bytes()
    head = HEADER_BYTES + int.from_bytes(after[:4], "big")  # the new base record; then the copied records
    assert len(after) > head and before.endswith(after[head:])
    again, log = reopen(tmp_path)
    assert log == entries(21, 40) and again.log_base == 20


def test_rebase_after_truncations_keeps_exactly_the_current_log(tmp_path: Path) -> None:
    """View changes leave truncate records and void entries in the file; the copied tail still replays to the
    log after the base, over many rounds of appends, truncations, compactions and reopenings (a model check)."""
    import random

    rng = random.Random(20261127)
    wal, _ = reopen(tmp_path)
    model: list[LogEntry] = []  # the whole log, ops 1..n
    base = 0
    view = 1
    for round_number in range(300):
        pick = rng.random()
        last = len(model)
        if pick < 0.5 or last == base:
            count = rng.randint(1, 6)
            batch = [entry(op, view, b"r%d" % round_number) for op in range(last + 1, last + 1 + count)]
            wal.persist_log(last + 1, batch)
            model += batch
        elif pick < 0.75:
            view += 1  # a new view replaces an uncommitted suffix
            cut = rng.randint(base, last)
            batch = [entry(op, view, b"v%d" % round_number) for op in range(cut + 1, cut + 1 + rng.randint(0, 4))]
            wal.persist_log(cut + 1, batch)
            model[cut:] = batch
        elif pick < 0.85:
            new_base = rng.randint(base, len(model))
            wal.rebase(snapshot_ref(new_base), log_base=new_base)
            base = new_base
        elif pick < 0.9:  # a snapshot installed from the primary, beyond everything this log holds
            new_base = len(model) + rng.randint(1, 5)
            wal.rebase(snapshot_ref(new_base), log_base=new_base)
            model += [entry(op, view) for op in range(len(model) + 1, new_base + 1)]  # never compared
            base = new_base
        else:
            wal.close()
            wal, log = reopen(tmp_path)
            assert log == model[base:] and wal.log_base == base
        assert wal.entries == model[base:] and wal.log_base == base
    wal.close()
    again, log = reopen(tmp_path)
    assert log == model[base:] and again.log_base == base


# --- batch records (kind 5): one record per persist_log call ---------------------------------------------------


def _records(path: Path) -> list[list[object]]:
    """The decoded payloads of every record in the file, in order."""
    import msgpack  # type: ignore[import-untyped]

    data = (path / WAL_NAME).read_bytes()
    out, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        out.append(msgpack.unpackb(data[offset + HEADER_BYTES : offset + HEADER_BYTES + length]))
        offset += HEADER_BYTES + length
    return out


def test_one_prepare_batch_is_one_record_with_the_last_chain_value(tmp_path: Path) -> None:
    """Primary prepares ops 1..8 in one batch: one kind-5 record (one pack, one checksum), holding the chain
    value of op 8; replay recomputes the chain of ops 1..8 and finds the same log."""
    write_log(tmp_path, (1, entries(1, 8)), (9, entries(9, 9)))
    records = _records(tmp_path)
    assert [record[0] for record in records] == [KIND_BATCH, KIND_BATCH]
    chain = bytes(16)
    for e in entries(1, 8):
        chain = chain_of(chain, e)
    assert records[0][1] == 1 and records[0][2] == chain
    assert reopen(tmp_path)[1] == entries(1, 9)


def test_a_log_of_single_entry_records_opens_and_grows_with_batch_records(tmp_path: Path) -> None:
    """An upgraded replica finds kind-4 records (one per entry, as versions before batch records wrote them):
    the log opens as it is, what it appends next is one kind-5 record chained after them, a truncation into
    the old records works, and the mixed file opens again."""
    chain = bytes(16)
    for e in entries(1, 4):
        chain = chain_of(chain, e)
        _append_raw(tmp_path, _entry_record(e, chain))
    wal, log = reopen(tmp_path)
    assert log == entries(1, 4)
    wal.persist_log(5, entries(5, 7))
    wal.sync()
    wal.persist_log(3, entries(3, 3, view=2))  # a new view's log diverges at op 3: truncate into the old records
    wal.close()
    assert [record[0] for record in _records(tmp_path)] == [KIND_ENTRY] * 4 + [KIND_BATCH, 2, KIND_BATCH]
    _, log = reopen(tmp_path)
    assert log == entries(1, 2) + entries(3, 3, view=2)


def test_a_torn_batch_record_drops_its_whole_batch_and_keeps_the_ones_before(tmp_path: Path) -> None:
    """The crash came while the third Prepare's record was being written (never synced, so never
    acknowledged): replay drops all of its ops, keeps ops 1..8, truncates the file to the second record's
    end, and the log grows again from op 9."""
    sizes = write_log(tmp_path, *prepares(1, 12))
    with open(tmp_path / WAL_NAME, "r+b") as file:
        file.truncate(sizes[2] - 7)
    wal, log = reopen(tmp_path)
    assert log == entries(1, 8) and wal.repaired_bytes == sizes[2] - 7 - sizes[1]
    assert (tmp_path / WAL_NAME).stat().st_size == sizes[1]
    wal.persist_log(9, entries(9, 10))
    wal.close()
    assert reopen(tmp_path)[1] == entries(1, 10)


def test_a_damaged_batch_record_in_the_middle_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    sizes = write_log(tmp_path, *prepares(1, 12))
    flip_bit(tmp_path / WAL_NAME, sizes[0] + HEADER_BYTES + 10)
    with pytest.raises(WalCorruption, match=f"offset {sizes[0]}"):
        reopen(tmp_path)


def test_an_intact_batch_record_that_breaks_the_chain_or_skips_ops_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, (1, entries(1, 4)))
    e5 = entry(5)
    fields = [e5.view, e5.client_id, e5.request_number, e5.operation, e5.timestamp]
    _append_raw(tmp_path, encode_record([KIND_BATCH, 5, bytes(16), *fields]))
    with pytest.raises(WalCorruption, match="hash chain"):
        reopen(tmp_path)
    (tmp_path / WAL_NAME).unlink()
    write_log(tmp_path, (1, entries(1, 4)))
    _append_raw(tmp_path, encode_record([KIND_BATCH, 7, bytes(16), *fields]))
    with pytest.raises(WalCorruption, match="starts at op 7, expected 5"):
        reopen(tmp_path)


@pytest.mark.parametrize(
    "items",
    [
        [KIND_BATCH, 1, bytes(16)],  # no entry
        [KIND_BATCH, 1, bytes(16), 1, 2, 3, b"x"],  # an entry short of a field
        [KIND_BATCH, 1, bytes(15), 1, 2, 3, b"x", 4],  # a short chain
        [KIND_BATCH, 1, bytes(16), 1, 2, 3, "x", 4],  # an operation that is not bin
        [KIND_BATCH, -1, bytes(16), 1, 2, 3, b"x", 4],  # a negative op_number
        [KIND_BATCH, 2**64 - 1, bytes(16), 1, 2, 3, b"x", 4, 1, 2, 3, b"y", 4],  # ops beyond 2**64 - 1
    ],
)
def test_a_malformed_batch_record_at_the_tail_is_repaired_like_a_torn_one(
    tmp_path: Path, items: list[object]
) -> None:
    """Intact checksum, content that does not decode: at the tail it is dropped (nothing after it)."""
    write_log(tmp_path, (1, entries(1, 2)))
    size = (tmp_path / WAL_NAME).stat().st_size
    _append_raw(tmp_path, encode_record(items))
    wal, log = reopen(tmp_path)
    assert log == entries(1, 2) and (tmp_path / WAL_NAME).stat().st_size == size


def test_rebase_inside_a_batch_record_skips_its_ops_before_the_base(tmp_path: Path) -> None:
    """Ops 1..12 in three batch records; the snapshot keeps the log after op 6, inside the second record. The
    record is copied as it is (ops 5..8), and replay skips 5..6, checks the chain from the base on, and
    appends 7..8; a flipped bit in the copied record is still corruption."""
    write_log(tmp_path, *prepares(1, 12))
    wal, _ = reopen(tmp_path)
    wal.rebase(snapshot_ref(6), log_base=6)
    assert wal.entries == entries(7, 12)
    wal.persist_log(13, entries(13, 14))
    wal.close()
    again, log = reopen(tmp_path)
    assert log == entries(7, 14) and again.log_base == 6
    again.persist_log(8, entries(8, 8, view=3))  # a truncation inside the copied record
    again.close()
    assert reopen(tmp_path)[1] == entries(7, 7) + entries(8, 8, view=3)
    records = _records(tmp_path)
    assert records[0][0] == KIND_BASE and records[1][:2] == [KIND_BATCH, 5]
    flip_bit(tmp_path / WAL_NAME, len(encode_record(records[0])) + HEADER_BYTES + 12)
    with pytest.raises(WalCorruption):
        reopen(tmp_path)


def test_an_overlapping_batch_record_anywhere_but_after_the_base_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, (1, entries(1, 4)))
    again = [entry(4)]
    _append_raw(tmp_path, _batch_record(again, chain_of(bytes(16), again[0])))
    with pytest.raises(WalCorruption, match="starts at op 4, expected 5"):
        reopen(tmp_path)


def test_a_persist_larger_than_a_record_is_split_into_several(tmp_path: Path) -> None:
    """A StartView carrying a long log: the batch is cut into records of at most _BATCH_RECORD_FILL bytes."""
    operation = b"x" * (_BATCH_RECORD_FILL // 3)
    log = [entry(op, operation=operation) for op in range(1, 8)]
    write_log(tmp_path, (1, log))
    records = _records(tmp_path)
    assert len(records) >= 3 and all(record[0] == KIND_BATCH for record in records)
    assert reopen(tmp_path)[1] == log


def test_the_chain_is_blake2b_16_of_the_previous_value_the_fields_and_the_operation() -> None:
    """The formula of the module docstring, computed part by part: the one-call hash gives the same bytes (logs
    written before it still verify)."""
    import hashlib
    import struct

    e = entry(7, view=3, operation=b"an operation")
    previous = bytes(range(16))
    digest = hashlib.blake2b(previous, digest_size=16)
    digest.update(struct.pack(">QQQQQQ", 3, 7, e.client_id, e.request_number, e.timestamp, len(e.operation)))
    digest.update(e.operation)
    assert chain_of(previous, e) == digest.digest()
