"""`zvsr watch` as a user runs it (issue 15, part 3): the lines it prints for each event, then a subprocess of the
CLI against real replica processes, its output read line by line with deadlines.

It prints the puts and deletes made through the proxy in order, after the prefix's snapshot; it goes on through a
kill -9 of the primary with no change missed or repeated; `--from-op N` prints exactly the changes after op N;
when the replicas no longer hold op N + 1 (restarted after snapshots) it says `compacted`, resyncs from a
snapshot and goes on live; SIGINT and SIGTERM end it with status 0 and no traceback; with no cluster it fails
after `--timeout-ms`, saying what it tried.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from zvsr.client import Client, ZvsrError
from zvsr.runtime.cluster_config import to_toml
from zvsr.runtime.processes import ProcessCluster, loopback_config, process_cluster, wait_for
from zvsr.runtime.status import collect_status, format_status
from zvsr.watch import COMPACTED, RESYNC, SNAPSHOT, SYNCED, WatchEvent
from zvsr.watch_cli import human_line, json_line, jsonable, notice_line, shown_key

Event = dict[str, Any]


def test_each_event_is_one_line_human_or_json() -> None:
    put, gone = WatchEvent(17, "a", 1), WatchEvent(18, "a", None, True)
    assert human_line(put) == "op 17  put  a = 1" and human_line(gone) == "op 18  del  a"
    assert human_line(WatchEvent(12, "a/b", {"x": [1, b"\x00\xff"]}, kind=SNAPSHOT)) == (
        'op 12  snapshot  a/b = {"x": [1, "00ff"]}'
    )
    assert human_line(WatchEvent(40, "a", "s", kind=RESYNC)) == 'op 40  resync  a = "s"'
    assert human_line(WatchEvent(40, "a b", None, True, RESYNC)) == 'op 40  resync del  "a b"'
    shown = {"event": "change", "op_number": 17, "key": "a", "value": 1, "deleted": False}
    assert json.loads(json_line(put)) == shown
    assert json.loads(json_line(gone))["deleted"] is True
    assert json.loads(json_line(WatchEvent(5, "", 40, kind=COMPACTED))) == {
        "event": "compacted",
        "from_op": 5,
        "oldest_available": 40,
    }
    synced = {"event": "synced", "op_number": 41, "keys": 2}
    assert json.loads(json_line(WatchEvent(41, "", 2, kind=SYNCED))) == synced
    assert notice_line(WatchEvent(5, "", 40, kind=COMPACTED), "a", first=False) == (
        "compacted: the replicas no longer hold the ops after op 5 (the oldest they hold is op 40): "
        "resyncing from a snapshot of 'a'"
    )
    assert notice_line(WatchEvent(12, "", 1, kind=SYNCED), "a", first=True).startswith(
        "watching 'a': 1 key as of op 12; changes follow"
    )
    assert notice_line(WatchEvent(41, "", 2, kind=SYNCED), "a", first=False).startswith("resynced 'a': 2 keys")


def test_keys_and_values_that_json_or_a_terminal_cannot_show_as_they_are_are_escaped() -> None:
    assert [shown_key(key) for key in ("a/b", "", "a\nb", "\x1b[2J")] == ["a/b", '""', '"a\\nb"', '"\\u001b[2J"']
    assert jsonable({1: b"\x01", b"k": (1, 2), "s": {"n": None}}) == {"1": "01", '"6b"': [1, 2], "s": {"n": None}}


# --- the command against real processes ----------------------------------------------------------------------


class WatchProcess:
    """`python -m zvsr watch ...` with its stdout and stderr read into a queue, line by line, by two threads."""

    def __init__(self, cluster_file: Path, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "zvsr", "watch", *arguments, "--config", str(cluster_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("out", self.process.stdout), ("err", self.process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            if name == "err":
                self.stderr.append(line)
            self.lines.put((name, line.rstrip("\n")))

    def next_line(self, deadline: float, *, stream: str = "out") -> str:
        """The next line of `stream` (the other's lines are skipped) before `deadline` (monotonic)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {stream} line from zvsr watch in time; stderr: {''.join(self.stderr)}")
            try:
                name, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if name == stream:
                return line

    def events(self, until: Callable[[list[Event]], bool], *, timeout_s: float = 30) -> list[Event]:
        """The JSON lines (``--json``) from now until `until` holds for those read so far."""
        deadline = time.monotonic() + timeout_s
        events: list[Event] = []
        while not until(events):
            events.append(json.loads(self.next_line(deadline)))
        return events

    def stop(self, signal_number: int, *, timeout_s: float = 10) -> int:
        """Send the signal; its exit status, within `timeout_s`."""
        self.process.send_signal(signal_number)
        code = self.process.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def changes(events: list[Event]) -> list[tuple[int, str, Any, bool]]:
    return [(e["op_number"], e["key"], e["value"], e["deleted"]) for e in events if e["event"] == "change"]


def has(kind: str, **fields: Any) -> Callable[[list[Event]], bool]:
    """True once an event of `kind` with these fields was read."""
    return lambda events: any(e["event"] == kind and fields.items() <= e.items() for e in events)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path) as started:
        started.wait_for_primary(timeout_s=30)
        yield started


@pytest.fixture
def watchers() -> Iterator[list[WatchProcess]]:
    """The test's `zvsr watch` processes: SIGKILLed at the end if still running."""
    started: list[WatchProcess] = []
    yield started
    for watcher in started:
        watcher.kill()


def start_watch(watchers: list[WatchProcess], cluster: ProcessCluster, *arguments: str) -> WatchProcess:
    watcher = WatchProcess(cluster.path, *arguments)
    watchers.append(watcher)
    return watcher


@pytest.mark.timeout(120)
def test_zvsr_watch_json_prints_the_snapshot_then_the_puts_and_deletes_in_order(
    cluster: ProcessCluster, watchers: list[WatchProcess]
) -> None:
    """`zvsr watch a --json`: the keys under `a` as they are, `synced`, then each change through the proxy, in
    op order; keys outside the prefix never show. `zvsr status` names each replica's watch endpoint."""
    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        client.put("a", 1)
        client.put("b", "elsewhere")
        watcher = start_watch(watchers, cluster, "a", "--json")
        first = watcher.events(has("synced"))
        assert [(e["event"], e["key"], e["value"]) for e in first[:-1]] == [("snapshot", "a", 1)]
        assert first[-1] == {"event": "synced", "op_number": first[0]["op_number"], "keys": 1}
        client.put("a", 2)
        client.put("ab", {"x": [1, 2]})
        client.put("b", "still elsewhere")
        assert client.delete("a")
        assert not client.delete("a")  # nothing to delete: no change
        assert client.incr("a/n", 5) == 5
        assert client.cas("a/n", 5, 6).ok
        events = watcher.events(lambda events: len(events) == 5)
        assert [(key, value, deleted) for _, key, value, deleted in changes(events)] == [
            ("a", 2, False),
            ("ab", {"x": [1, 2]}, False),
            ("a", None, True),
            ("a/n", 5, False),
            ("a/n", 6, False),
        ]
        numbers = [number for number, *_ in changes(events)]
        assert numbers == sorted(set(numbers)) and numbers[0] > first[0]["op_number"]
        assert watcher.stop(signal.SIGINT) == 0
    report = collect_status(cluster.config)
    table = format_status(report)
    for entry, address in zip(report["replicas"], cluster.config.replicas, strict=True):
        assert entry["endpoints"]["watch"] == address.watch and address.watch in table
        first_op, last_op = entry["watch_history"]
        assert first_op == 1 and last_op >= numbers[-1]


@pytest.mark.timeout(180)
def test_zvsr_watch_goes_on_through_a_kill_9_of_the_primary_missing_and_repeating_nothing(
    cluster: ProcessCluster, watchers: list[WatchProcess]
) -> None:
    """A writer puts k/0, k/1, ... through the proxy; the primary is killed with SIGKILL midway. The watcher sees
    every acknowledged put exactly once, in increasing op order, before and after the failover."""
    watcher = start_watch(watchers, cluster, "k/", "--json")
    watcher.events(has("synced", keys=0))
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        with Client(cluster.config.proxy, timeout_ms=5000) as client:
            index = 0
            while not stop.is_set():
                key = f"k/{index:05d}"
                try:
                    client.put(key, index)
                    acknowledged.append(key)
                except ZvsrError:
                    pass  # outcome unknown: it may or may not show
                index += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_for(lambda: len(acknowledged) >= 100, timeout_s=60, what="100 puts before the kill")
        cluster.kill(cluster.wait_for_primary())
        before = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= before + 100, timeout_s=90, what="100 puts after the failover")
    finally:
        stop.set()
        writer.join(timeout=30)
    wanted = set(acknowledged)
    events = watcher.events(lambda events: wanted <= {key for _, key, _, _ in changes(events)}, timeout_s=60)
    seen = changes(events)
    keys = [key for _, key, _, _ in seen]
    assert len(keys) == len(set(keys)), "a change was printed twice"
    numbers = [number for number, *_ in seen]
    assert numbers == sorted(set(numbers)), "changes out of op order"
    assert all(value == int(key[2:]) and not deleted for _, key, value, deleted in seen)
    assert sum(1 for key in keys if key in set(acknowledged[before:])) >= 100  # it went on after the kill
    assert watcher.stop(signal.SIGTERM) == 0


@pytest.mark.timeout(120)
def test_zvsr_watch_from_op_prints_exactly_the_changes_after_that_op(
    cluster: ProcessCluster, watchers: list[WatchProcess]
) -> None:
    """Ten puts; N is the commit number after the fifth. `--from-op N` prints the last five and then the live
    ones, nothing before, no snapshot; `--from-op 0` prints all of them."""
    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        for index in range(5):
            client.put(f"c/{index}", index)
        primary = cluster.wait_for_primary()
        status = cluster.status(primary)
        assert status is not None
        after = status["commit_number"]  # the primary answered the fifth put: it is committed, at or before
        for index in range(5, 10):
            client.put(f"c/{index}", index)
        resumed = start_watch(watchers, cluster, "c/", "--from-op", str(after), "--json")
        events = resumed.events(lambda events: len(events) == 5)
        expected = [("change", f"c/{i}", i) for i in range(5, 10)]
        assert [(e["event"], e["key"], e["value"]) for e in events] == expected
        assert all(e["op_number"] > after for e in events)
        client.put("c/live", "now")
        assert resumed.events(lambda events: len(events) == 1)[0]["key"] == "c/live"
        everything = start_watch(watchers, cluster, "c/", "--from-op", "0", "--json")
        keys = [e["key"] for e in everything.events(lambda events: len(events) == 11)]
        assert keys == [f"c/{i}" for i in range(10)] + ["c/live"]
        assert resumed.stop(signal.SIGINT) == 0 and everything.stop(signal.SIGINT) == 0
        for watcher in (resumed, everything):
            assert watcher.lines.empty() or all(name == "err" for name, _ in list(watcher.lines.queue))


@pytest.mark.timeout(120)
def test_zvsr_watch_from_op_catches_up_over_several_history_chunks_then_goes_live(
    cluster: ProcessCluster, watchers: list[WatchProcess]
) -> None:
    """60 puts of 40 KB: the history after op 0 is about 2.4 MB, three chunks of at most
    WATCH_HISTORY_CHUNK_BYTES. `--from-op 0` prints every put once, in order, then a live one."""
    big = "x" * 40_000
    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        for index in range(60):
            client.put(f"h/{index:02d}", f"{index}{big}")
        watcher = start_watch(watchers, cluster, "h/", "--from-op", "0", "--json")
        events = watcher.events(lambda events: len(events) == 60)
        assert [(e["key"], e["value"]) for e in events] == [(f"h/{i:02d}", f"{i}{big}") for i in range(60)]
        client.put("h/live", 1)
        assert watcher.events(lambda events: len(events) == 1)[0]["key"] == "h/live"
        assert watcher.stop(signal.SIGINT) == 0
        assert all(name == "err" for name, _ in list(watcher.lines.queue))  # nothing printed twice
    # One query to each replica, then the next chunks asked of the one that answered first: at least 3 + 2.
    statuses = cluster.statuses().values()
    assert sum(status["counters"].get("client: history queries (ok)", 0) for status in statuses) >= 5


@pytest.mark.timeout(240)
def test_zvsr_watch_from_a_compacted_op_says_so_then_resyncs_from_a_snapshot_and_goes_on(
    tmp_path: Path, watchers: list[WatchProcess]
) -> None:
    """Snapshots every 10 ops; 40 puts; every replica restarts (kill -9, then from its disk): each now holds only
    the ops after its latest snapshot. `--from-op 1`: `compacted`, every key of the prefix as a `resync`,
    `synced`, then the live changes."""
    with process_cluster(tmp_path, snapshot_interval_ops=10) as cluster:
        cluster.wait_for_primary(timeout_s=30)
        with Client(cluster.config.proxy, timeout_ms=10_000) as client:
            for index in range(40):
                client.put(f"d/{index:02d}", index)
            client.delete("d/00")
            for index in range(3):
                cluster.kill(index)
            for index in range(3):
                cluster.start_node(index)
            cluster.wait_for_primary(timeout_s=60)
            watcher = start_watch(watchers, cluster, "d/", "--from-op", "1", "--json")
            events = watcher.events(has("synced"), timeout_s=60)
            compacted = events[0]
            assert compacted["event"] == "compacted" and compacted["from_op"] == 1
            assert compacted["oldest_available"] > 2  # op 2 went into a snapshot on every replica
            resync = events[1:-1]
            assert {e["event"] for e in resync} == {"resync"} and not any(e["deleted"] for e in resync)
            assert [(e["key"], e["value"]) for e in resync] == [(f"d/{i:02d}", i) for i in range(1, 40)]
            assert events[-1]["keys"] == 39 and events[-1]["op_number"] == resync[0]["op_number"]
            client.put("d/live", True)
            live = watcher.events(lambda events: len(events) == 1)[0]
            assert (live["event"], live["key"], live["value"]) == ("change", "d/live", True)
            assert live["op_number"] > events[-1]["op_number"]
            assert watcher.stop(signal.SIGINT) == 0


@pytest.mark.timeout(120)
def test_sigint_and_sigterm_end_zvsr_watch_with_status_0_and_no_traceback(
    cluster: ProcessCluster, watchers: list[WatchProcess]
) -> None:
    """What Ctrl-C in a terminal (SIGINT) and a service manager (SIGTERM) do, once the watch is running."""
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        watcher = start_watch(watchers, cluster, "s")
        line = watcher.next_line(time.monotonic() + 30, stream="err")
        assert line.startswith("watching 's': 0 keys as of op "), line
        started = time.monotonic()
        assert watcher.stop(signal_number) == 0
        assert time.monotonic() - started < 5
        assert "Traceback" not in "".join(watcher.stderr), watcher.stderr



@pytest.mark.timeout(120)
def test_zvsr_watch_piped_into_head_ends_with_status_0_when_head_is_done(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    """`zvsr watch s --json | head -n 1`: head takes the first line and exits; the watch's next line finds the
    pipe closed, and it ends quietly with status 0 (the pipeline too, with pipefail)."""
    errors = tmp_path / "watch.err"
    watch = shlex.join([sys.executable, "-m", "zvsr", "watch", "s", "--json", "--config", str(cluster.path)])
    pipeline = subprocess.Popen(
        ["bash", "-c", f"set -o pipefail; {watch} 2>{shlex.quote(str(errors))} | head -n 1"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert pipeline.stdout is not None
        assert json.loads(pipeline.stdout.readline())["event"] == "synced"  # the test's pytest timeout bounds it
        with Client(cluster.config.proxy, timeout_ms=10_000) as client:

            def ended() -> bool:
                client.put("s", "to nobody")  # until a line finds the pipe closed (head may still be exiting)
                return pipeline.poll() is not None

            wait_for(ended, timeout_s=30, what="the pipeline to end", interval_s=0.1)
        assert pipeline.returncode == 0
        assert "Traceback" not in errors.read_text() and errors.read_text() == "", errors.read_text()
    finally:
        if pipeline.poll() is None:
            os.killpg(pipeline.pid, signal.SIGKILL)
            pipeline.wait()


@pytest.mark.timeout(60)
def test_zvsr_watch_with_no_cluster_fails_after_its_timeout_saying_what_it_asked(tmp_path: Path) -> None:
    config = loopback_config(3)
    path = tmp_path / "cluster.toml"
    path.write_text(to_toml(config))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "zvsr", "watch", "a", "--config", str(path), "--timeout-ms", "1500"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and time.monotonic() - started < 20
    assert "no replica answered within 1500 ms" in result.stderr and config.replicas[0].client in result.stderr
    assert "--config" in result.stderr and "Traceback" not in result.stderr
