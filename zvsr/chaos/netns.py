"""The network of a chaos run: one Linux network namespace per replica, joined by a bridge, and the faults the
kernel can make on it (`ip` and `tc` of iproute2, as root).

Theory of operation
-------------------
Replica i lives in namespace ``zvsr-chaos-<pid>-r<i>`` with one interface, ``eth0``, at 10.A.B.(10 + i)/24;
its other end (``zc<pid>h<i>``) is a port of the bridge ``zc<pid>b`` in the namespace we run in, which holds
10.A.B.1 — the proxy, the clients and the relays' control all stay here. The pid in every name marks the run
that owns it: a run sweeps away, at its start, whatever an earlier run whose process is gone left behind
(`sweep_stale`), and never touches a live run's. A.B is derived from the pid too, so concurrent runs do not
share a subnet.

Faults, each undone by its own call:
- a link down (`set_link`): the replica's bridge port goes down; it reaches no one and no one reaches it;
- a one-way drop (`block`): in the sender's namespace, the receiver's address is pinned to a MAC that nobody
  has (``ip neigh replace … nud permanent``), so its frames go nowhere. Blocking both ways cuts two replicas
  apart while both still reach the proxy. Over TCP a one-way drop is not a one-way link for long: the
  receiver's acknowledgements are lost too, so the sender's connections stall within seconds (message-level
  one-way faults are the relay's: `zvsr.chaos.relay`);
- a slow link (`shape`): htb on both ends of the replica's veth, so traffic in and out of it is limited to a
  rate (no netem here: neither delay nor loss can be added by the kernel in this setup).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Final

from zvsr.constants import CHAOS_COMMAND_TIMEOUT_S

PREFIX: Final = "zvsr-chaos-"  # namespaces: zvsr-chaos-<pid>-r<i>
LINK_PREFIX: Final = "zc"  # links: zc<pid>b (the bridge), zc<pid>h<i> (replica i's end); <= 15 characters
DEAD_MAC: Final = "02:00:00:00:00:01"  # locally administered, owned by nobody: frames to it are dropped


class NetworkUnavailable(Exception):
    """Namespaces cannot be made here (not root, no iproute2, no namespace support): one line says why."""


class NetworkError(Exception):
    """An `ip` or `tc` command failed while the network was up."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CHAOS_COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NetworkError(f"{' '.join(argv)}: {error}") from error
    if check and done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done


def check_available() -> None:
    """Raise NetworkUnavailable unless this process may create namespaces and links."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        raise NetworkUnavailable("network namespaces need Linux")
    if os.geteuid() != 0:
        raise NetworkUnavailable("network namespaces need root (run as root, e.g. with sudo)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise NetworkUnavailable(f"`{tool}` not found (install iproute2)")
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run("ip", "netns", "add", probe)
    except NetworkError as error:
        raise NetworkUnavailable(f"cannot create a network namespace: {error}") from error
    _run("ip", "netns", "del", probe, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process in `namespace` (a namespace is only gone once nothing runs in it)."""
    done = _run("ip", "netns", "pids", namespace, check=False)
    for line in done.stdout.split():
        try:
            os.kill(int(line), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


def sweep_stale() -> list[str]:
    """Remove the namespaces and links of earlier runs whose process is gone; returns what was removed."""
    removed = []
    listing = _run("ip", "netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{re.escape(PREFIX)}(\d+)-\w+", name)
        if match and not _alive(int(match.group(1))):
            _kill_inside(name)
            _run("ip", "netns", "del", name, check=False)
            removed.append(name)
    links = _run("ip", "-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        match = re.match(rf"\d+: ({re.escape(LINK_PREFIX)}(\d+)[bh]\d*)[@:]", line)
        if match and not _alive(int(match.group(2))):
            _run("ip", "link", "del", match.group(1), check=False)
            removed.append(match.group(1))
    return removed


@dataclass
class Network:
    """The namespaces, bridge and links of one run (this process's pid names them). `up` builds it, `down`
    removes everything it made, whatever state it is in; both are safe to call twice."""

    replicas: int
    pid: int = field(default_factory=os.getpid)
    made: list[str] = field(default_factory=list)  # namespaces created, for `down`
    _blocked: set[tuple[int, int]] = field(default_factory=set)
    _shaped: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.subnet = f"10.{64 + (self.pid >> 8) % 128}.{self.pid & 0xFF}"
        if len(f"{LINK_PREFIX}{self.pid}h{self.replicas}") > 15:
            raise NetworkUnavailable(f"pid {self.pid} too large for interface names")

    # --- names and addresses -------------------------------------------------------------------------------

    @property
    def bridge(self) -> str:
        return f"{LINK_PREFIX}{self.pid}b"

    @property
    def host_address(self) -> str:
        """The address of the namespace we run in (the proxy's and the clients'), on the bridge."""
        return f"{self.subnet}.1"

    def namespace(self, index: int) -> str:
        return f"{PREFIX}{self.pid}-r{index}"

    def veth(self, index: int) -> str:
        return f"{LINK_PREFIX}{self.pid}h{index}"

    def address(self, index: int) -> str:
        return f"{self.subnet}.{10 + index}"

    def exec_prefix(self, index: int) -> list[str]:
        """What runs a command inside replica `index`'s namespace."""
        return ["ip", "netns", "exec", self.namespace(index)]

    # --- life cycle -----------------------------------------------------------------------------------------

    def up(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "link", "set", self.bridge, "up")
        _run("ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        for index in range(self.replicas):
            namespace = self.namespace(index)
            _run("ip", "netns", "add", namespace)
            self.made.append(namespace)
            _run("ip", "link", "add", self.veth(index), "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _run("ip", "link", "set", self.veth(index), "master", self.bridge, "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
            _run("ip", "-n", namespace, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
            _run("ip", "-n", namespace, "link", "set", "eth0", "up")

    def down(self) -> None:
        for namespace in self.made:
            _kill_inside(namespace)
            _run("ip", "netns", "del", namespace, check=False)
        self.made = []
        _run("ip", "link", "del", self.bridge, check=False)
        for index in range(self.replicas):  # normally gone with their namespace already
            _run("ip", "link", "del", self.veth(index), check=False)

    # --- faults ---------------------------------------------------------------------------------------------

    def set_link(self, index: int, *, up: bool) -> None:
        _run("ip", "link", "set", self.veth(index), "up" if up else "down")

    def block(self, source: int, to: int) -> None:
        """Frames from replica `source` to replica `to` are dropped (one way, at the IP level)."""
        _run(
            "ip", "-n", self.namespace(source), "neigh", "replace", self.address(to),
            "lladdr", DEAD_MAC, "nud", "permanent", "dev", "eth0",
        )  # fmt: skip
        self._blocked.add((source, to))

    def unblock_all(self) -> None:
        for source, to in sorted(self._blocked):
            _run("ip", "-n", self.namespace(source), "neigh", "del", self.address(to), "dev", "eth0", check=False)
        self._blocked.clear()

    def shape(self, index: int, *, kbit: int) -> None:
        """Traffic into and out of replica `index` is limited to `kbit` kbit/s each way (htb, both veth ends)."""
        for prefix, device in (([], self.veth(index)), (["-n", self.namespace(index)], "eth0")):
            _run("tc", *prefix, "qdisc", "replace", "dev", device, "root", "handle", "1:", "htb", "default", "10")
            _run(
                "tc", *prefix, "class", "replace", "dev", device, "parent", "1:", "classid", "1:10",
                "htb", "rate", f"{kbit}kbit", "ceil", f"{kbit}kbit",
            )  # fmt: skip
        self._shaped.add(index)

    def unshape_all(self) -> None:
        for index in sorted(self._shaped):
            _run("tc", "qdisc", "del", "dev", self.veth(index), "root", check=False)
            _run("tc", "-n", self.namespace(index), "qdisc", "del", "dev", "eth0", "root", check=False)
        self._shaped.clear()
