"""`zvsr chaos`: a short seeded schedule of every kind of fault against real processes in network namespaces
(needs root and iproute2, as CI has), its cleanup, and the relay that makes message-level faults.

The relay tests and the "cannot run here" test need neither root nor namespaces."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner

from zvsr.chaos import netns
from zvsr.chaos.cli import chaos_command
from zvsr.chaos.netns import Network, NetworkUnavailable, check_available, sweep_stale
from zvsr.chaos.relay import Policy, RelayControl
from zvsr.chaos.run import run_chaos
from zvsr.chaos.schedule import kinds_for
from zvsr.runtime.processes import free_ports, wait_for


def namespaces_or_skip() -> None:
    try:
        check_available()
    except NetworkUnavailable as error:
        pytest.skip(f"zvsr chaos cannot run here: {error}")


def leftovers(pid: int) -> list[str]:
    """Namespaces and links named after run `pid` that still exist."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    found = [line.split()[0] for line in names.splitlines() if line.startswith(f"{netns.PREFIX}{pid}-")]
    found += [line.split(":")[1].strip() for line in links.splitlines() if f" {netns.LINK_PREFIX}{pid}" in line]
    return found


# --- the short schedule (CI) -----------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_a_short_schedule_of_every_kind_of_fault_keeps_every_write_and_heals_without_a_view_change() -> None:
    """3 replicas, every nemesis once in a seeded order (partitions, one-way loss, slow link, delay,
    duplication and reordering, kill -9, SIGSTOP, a wiped replica, a kill while a backup is cut off), under a
    client workload: the history is linearizable, no acknowledged write is lost, the cluster acknowledges
    writes again after every fault, healing a fault of one replica changes no view, and nothing is left."""
    namespaces_or_skip()
    report = run_chaos(replicas=3, seed=17, duration_s=0)
    assert report.ok, report.summary()
    assert sorted(fault.kind for fault in report.faults) == sorted(kinds_for(3))
    assert all(fault.recovery_s is not None for fault in report.faults)
    assert report.heal_view_changes() == 0, report.summary()
    assert report.ops_ok > 1000 and report.linearizable == "ok"
    assert report.elapsed_s < 120, f"the short schedule took {report.elapsed_s:.0f} s"
    assert leftovers(os.getpid()) == []
    assert not Path(report.run_dir).exists(), "a passing run's directory is removed"


def chaos_processes() -> set[int]:
    """Pids of the processes a chaos run starts (nodes, relays, the proxy: their files are in its directory)."""
    listing = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    marker = f"{tempfile.gettempdir()}/zvsr-chaos-"
    return {int(line.split()[0]) for line in listing.splitlines() if marker in line}


@pytest.mark.timeout(120)
def test_an_interrupted_run_leaves_no_namespace_link_or_process() -> None:
    """Ctrl-C (KeyboardInterrupt) in the middle of the first fault: everything made is removed."""
    namespaces_or_skip()
    seen: list[str] = []
    before = chaos_processes()

    def interrupt_at_the_first_fault(line: str) -> None:
        seen.append(line)
        if " for " in line:
            assert chaos_processes() - before, "the run's processes are up"
            raise KeyboardInterrupt

    directories = set(Path(tempfile.gettempdir()).glob("zvsr-chaos-*"))
    with pytest.raises(KeyboardInterrupt):
        run_chaos(replicas=3, seed=5, duration_s=0, progress=interrupt_at_the_first_fault)
    assert any(" for " in line for line in seen)
    assert leftovers(os.getpid()) == []
    assert chaos_processes() - before == set()
    kept = set(Path(tempfile.gettempdir()).glob("zvsr-chaos-*")) - directories
    assert len(kept) == 1, "an interrupted run keeps its directory (history, logs)"
    shutil.rmtree(kept.pop())


@pytest.mark.timeout(60)
def test_what_a_dead_run_left_is_swept_at_the_start_of_the_next() -> None:
    """A namespace, a bridge and a process in the namespace, named after a pid that is gone."""
    namespaces_or_skip()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Network(replicas=1, pid=dead.pid)
    try:
        stale.up()
        sleeper = subprocess.Popen([*stale.exec_prefix(0), "sleep", "600"])
        assert leftovers(dead.pid)
        removed = sweep_stale()
        assert stale.namespace(0) in removed and stale.bridge in removed
        assert sleeper.wait(timeout=10) != 0, "the process inside was killed"
        wait_for(lambda: leftovers(dead.pid) == [], timeout_s=10, what="the stale namespace and links to go")
    finally:
        stale.down()


def test_without_namespaces_the_command_says_why_in_one_line_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(chaos_command, ["--seed", "1"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("zvsr chaos: cannot run here")]
    assert lines == ["zvsr chaos: cannot run here: network namespaces need root (run as root, e.g. with sudo)"]


# --- the relay --------------------------------------------------------------------------------------------------


@pytest.fixture()
def relayed(tmp_path: Path) -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes], RelayControl]]:
    """A DEALER connected through a relay (on 127.0.0.1, in this namespace) to a ROUTER, and the relay's
    control: the DEALER -> ROUTER direction is the relayed replica's inbound one."""
    relay_port, router_port = free_ports(2)
    control = tmp_path / "relay.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "zvsr.chaos.relay", "--control", str(control), "--seed", "1",
         "--route", f"127.0.0.1:{relay_port}=127.0.0.1:{router_port}:in"],
    )  # fmt: skip
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = context.socket(zmq.ROUTER)
    dealer = context.socket(zmq.DEALER)
    try:
        router.bind(f"tcp://127.0.0.1:{router_port}")
        relay = RelayControl(control)
        wait_for(relay.ready, timeout_s=10, what="the relay")
        dealer.setsockopt(zmq.ROUTING_ID, b"r1")
        dealer.connect(f"tcp://127.0.0.1:{relay_port}")
        yield dealer, router, relay
    finally:
        dealer.close(linger=0)
        router.close(linger=0)
        context.term()
        process.kill()
        process.wait(timeout=10)


def received(router: zmq.Socket[bytes], *, quiet_s: float = 0.3) -> list[bytes]:
    """Everything the ROUTER gets until it has been quiet for `quiet_s`."""
    out = []
    while router.poll(int(quiet_s * 1000)):
        out.append(router.recv_multipart()[1])
    return out


@pytest.mark.timeout(60)
def test_the_relay_passes_messages_in_order_then_drops_duplicates_or_reorders_them_as_told(
    relayed: tuple[zmq.Socket[bytes], zmq.Socket[bytes], RelayControl],
) -> None:
    dealer, router, relay = relayed
    for number in range(20):
        dealer.send(b"%d" % number)
    assert received(router) == [b"%d" % n for n in range(20)], "passive: every message, in order"
    relay.set_policy("127.0.0.1", to_replica=Policy(drop=True))
    for number in range(20):
        dealer.send(b"drop%d" % number)
    assert received(router) == []
    relay.set_policy("127.0.0.1", to_replica=Policy(duplicate=0.5, reorder=0.3))
    sent = [b"x%d" % n for n in range(200)]
    for message in sent:
        dealer.send(message)
    got = received(router)
    assert sorted(set(got)) == sorted(set(sent)), "each one arrives at least once"
    assert len(got) > len(sent), "some twice"
    assert got != sorted(got, key=sent.index), "some out of order"
    counts = relay.counts()
    assert counts["dropped"] == 20 and counts["duplicated"] > 0 and counts["reordered"] > 0
    relay.clear()
    dealer.send(b"after")
    assert received(router) == [b"after"], "the connection survived it all"


@pytest.mark.timeout(60)
def test_the_relay_delays_messages_in_order(
    relayed: tuple[zmq.Socket[bytes], zmq.Socket[bytes], RelayControl],
) -> None:
    dealer, router, relay = relayed
    relay.set_policy("127.0.0.1", to_replica=Policy(delay_ms=(200, 300)))
    sent_at = time.monotonic()
    for number in range(10):
        dealer.send(b"%d" % number)
    assert router.poll(5000)
    waited = time.monotonic() - sent_at
    assert [router.recv_multipart()[1]] + received(router, quiet_s=0.5) == [b"%d" % n for n in range(10)]
    assert waited >= 0.19, f"the first message came after {waited:.3f} s"


def test_a_node_imports_none_of_the_chaos_tools() -> None:
    """The chaos tools are not the runtime (STYLE rule 15): a node imports none of them."""
    code = "import sys, zvsr.runtime.node; print(any(m.startswith('zvsr.chaos') for m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
