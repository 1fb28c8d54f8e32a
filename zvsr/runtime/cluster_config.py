"""Cluster configuration: who the replicas are, where they listen, and how the processes behave.

Sources are layered, highest first: command-line flags > `ZVSR_*` environment variables > the TOML file >
defaults. A cluster file names every replica's three endpoints (peer ROUTER, heartbeat PUB, client ROUTER) in
index order — the paper's configuration (§4): replica i is `[[replica]]` number i, and primary(v) = v mod n.

    [cluster]
    id = 1
    epoch = 0
    tick_ms = 10
    app = "zvsr.apps.coordination:CoordinationApp"
    read_mode = "read_index"    # or "lease", or "log": how the app's read-only ops are served

    [[replica]]
    # id = 0                            # optional: the replica's id (default: its position in the file)
    peer = "tcp://127.0.0.1:7710"
    heartbeat = "tcp://127.0.0.1:7711"
    client = "tcp://127.0.0.1:7712"
    watch = "tcp://127.0.0.1:7713"      # optional: PUB of committed operations (the watch stream)
    # ... one table per replica

    [proxy]
    endpoint = "tcp://127.0.0.1:7700"
    request_timeout_ms = 5000

    [node]
    data_dir = "zvsr-data"      # each replica uses <data_dir>/replica-<i>
    fsync = "always"            # or "never"
    snapshot_interval_ops = 10000   # snapshot, then truncate the log, every this many committed ops (0: never)
    client_table_max = 100000       # client sessions remembered; beyond, the least recently active is evicted
    require_registration = false    # true: refuse requests of sessions not registered through the log
    log_level = "info"
    log_format = "text"         # or "json"

    [timeouts]                  # optional overrides of zvsr.protocol.config.Config, in ticks
    primary_timeout_ticks = 20

    [security]                  # optional: CurveZMQ on every socket (zvsr/runtime/security.py)
    keys_dir = "keys"           # the layout `zvsr keygen` writes
    client_key = "keys/clients/admin.key_secret"   # the key the CLI tools (kv, status) connect with

    [metrics]                   # optional: Prometheus /metrics over HTTP (docs/operations.md "Metrics")
    replica_ports = [7714, 7724, 7734]  # replica i serves on its client endpoint's host, port replica_ports[i]
    proxy_port = 7704                   # the proxy serves on its endpoint's host, this port

Every value is validated here, so a typo fails at start with a message naming the key, not later.

Replica ids and reconfiguration (VR Revisited §7, docs/operations.md "Changing the replicas"). A replica's id is
stable and never reused; until the first reconfiguration the ids are the positions 0..n-1, and a file without
``id`` keys means exactly that. ``[cluster] epoch`` and ``initial_replicas`` describe the cluster's *first*
configuration (replicas 0..initial_replicas-1 in that epoch): every replica replays its log from there, so they
never change. After a reconfiguration the file is an address book: the replicas it lists (with their ``id``)
are where to find them, but who is a member is what the replicas' durable state says (`zvsr member list
--write-config` writes a current file). A file with ``id`` keys must say ``initial_replicas`` (positions no
longer tell how many the cluster started with).

A replica's ``watch`` endpoint is optional: with it the replica publishes every operation it executes (the
watch stream, `zvsr.runtime.watch_publisher`, docs/protocol.md §12); without it the replica publishes nothing.

Metrics are off unless configured. A process's port is, highest first: ``--metrics-port`` (`zvsr node`,
`zvsr proxy`), ``ZVSR_METRICS_PORT``, then the file's `[metrics]` entry for that replica or proxy. Both the
flag and the variable set the port of the one process they are given to. The host is always that of the
process's own ZeroMQ endpoint (a replica's ``client``, the proxy's ``endpoint``): ``tcp://HOST:PORT``'s HOST,
``*`` meaning every interface, and 127.0.0.1 for other transports. Port 0 takes a free port at start (tests);
the URL shows in `zvsr status`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zvsr import constants
from zvsr.protocol.config import Config
from zvsr.runtime.security import KeyPair, Keys, SecurityError, read_pair

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 7700
# Where a running `zvsr cluster up` leaves a copy of its cluster file, relative to the directory it runs in, for
# the client-side commands run there to find (`zvsr.cli_options`); it removes the copy when it stops.
DISCOVERY_FILE = Path(".zvsr") / "cluster.toml"
DEFAULT_APP = "zvsr.apps.coordination:CoordinationApp"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
FSYNC_MODES = ("always", "never")
TIMEOUT_KEYS = (
    "heartbeat_ticks",
    "primary_timeout_ticks",
    "primary_timeout_jitter_ticks",
    "startup_grace_ticks",
    "view_change_resend_ticks",
    "view_change_timeout_ticks",
    "view_change_timeout_max_ticks",
    "prepare_resend_ticks",
    "repair_ticks",
    "recovery_resend_ticks",
    "quorum_timeout_ticks",
)
# Environment variable -> settings key (flags use the same keys).
ENVIRONMENT = {
    "ZVSR_CLUSTER_ID": "cluster_id",
    "ZVSR_EPOCH": "epoch",
    "ZVSR_INITIAL_REPLICAS": "initial_replicas",
    "ZVSR_TICK_MS": "tick_ms",
    "ZVSR_APP": "app",
    "ZVSR_READ_MODE": "read_mode",
    "ZVSR_PROXY": "proxy",
    "ZVSR_REQUEST_TIMEOUT_MS": "request_timeout_ms",
    "ZVSR_DATA_DIR": "data_dir",
    "ZVSR_LOG_LEVEL": "log_level",
    "ZVSR_LOG_FORMAT": "log_format",
    "ZVSR_FSYNC": "fsync",
    "ZVSR_SNAPSHOT_INTERVAL_OPS": "snapshot_interval_ops",
    "ZVSR_CLIENT_TABLE_MAX": "client_table_max",
    "ZVSR_REQUIRE_REGISTRATION": "require_registration",
    "ZVSR_KEYS_DIR": "keys_dir",
    "ZVSR_CLIENT_KEY": "client_key",
    "ZVSR_METRICS_PORT": "metrics_port",
}
_REPLICA_KEYS = frozenset({"id", "peer", "heartbeat", "client", "watch"})  # keys of a [[replica]] table
INT_KEYS = frozenset(
    {
        "cluster_id",
        "epoch",
        "initial_replicas",
        "tick_ms",
        "request_timeout_ms",
        "snapshot_interval_ops",
        "client_table_max",
        "metrics_port",
    }
)
PORT_MAX = 65535


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the setting and what is wrong with it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaAddress:
    peer: str  # ROUTER this replica binds for replica-to-replica traffic
    heartbeat: str  # PUB this replica binds for heartbeats (Commit)
    client: str  # ROUTER this replica binds for client requests (REQ-compatible envelope)
    watch: str | None = None  # PUB this replica binds for the watch stream (committed ops); None: no stream


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    replicas: tuple[ReplicaAddress, ...]
    replica_ids: tuple[int, ...] = ()  # the id of each of `replicas`; (): their positions 0..n-1
    cluster_id: int = 1
    epoch: int = 0  # the epoch of the cluster's first configuration
    initial_replicas: int | None = None  # the first configuration's size; None: len(replicas) (ids = positions)
    tick_ms: int = constants.TICK_MS
    app: str = DEFAULT_APP
    read_mode: str = constants.READ_MODE_DEFAULT  # zvsr.protocol.reads; the same on every replica
    proxy: str = f"tcp://{DEFAULT_HOST}:{DEFAULT_BASE_PORT}"
    request_timeout_ms: int = constants.PROXY_REQUEST_TIMEOUT_MS
    data_dir: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    fsync: str = "always"  # "never": faster, but a power cut may lose acknowledged writes
    snapshot_interval_ops: int = constants.SNAPSHOT_INTERVAL_OPS
    client_table_max: int = constants.CLIENT_TABLE_MAX
    # Refuse requests of client sessions not registered through the log (`zvsr.protocol.client_table`): closes
    # the window in which a late retry of an evicted session runs again. Off, a client's request 1 also opens a
    # session implicitly, for clients that do not register (every client shipped here registers).
    require_registration: bool = True
    keys_dir: str | None = None  # CurveZMQ on when set
    client_key: str | None = None  # a client's .key_secret, for the CLI tools
    timeouts: Mapping[str, int] = field(default_factory=dict)
    metrics_ports: tuple[int, ...] = ()  # [metrics] replica_ports: replica i's /metrics port; (): none
    proxy_metrics_port: int | None = None  # [metrics] proxy_port; None: the proxy serves no metrics
    metrics_port: int | None = None  # --metrics-port / ZVSR_METRICS_PORT: this process's, over the file's

    def __post_init__(self) -> None:
        if not 1 <= len(self.replicas) <= constants.REPLICAS_MAX:
            raise ConfigError(f"a cluster has 1..{constants.REPLICAS_MAX} replicas, not {len(self.replicas)}")
        if not 0 <= self.cluster_id <= constants.ID_MAX:
            raise ConfigError(f"cluster id must be 0..2^64-1, got {self.cluster_id}")
        if not 0 <= self.epoch <= constants.ID_MAX:
            raise ConfigError(f"epoch must be 0..2^64-1, got {self.epoch}")
        self._check_ids()
        if not 1 <= self.tick_ms <= 1000:
            raise ConfigError(f"tick_ms must be 1..1000, got {self.tick_ms}")
        if self.request_timeout_ms < 1:
            raise ConfigError(f"request_timeout_ms must be positive, got {self.request_timeout_ms}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.fsync not in FSYNC_MODES:
            raise ConfigError(f"fsync must be one of {', '.join(FSYNC_MODES)}, got {self.fsync!r}")
        if not 0 <= self.snapshot_interval_ops <= constants.ID_MAX:
            raise ConfigError(f"snapshot_interval_ops must be >= 0 (0: never), got {self.snapshot_interval_ops}")
        if not 1 <= self.client_table_max <= constants.ID_MAX:
            raise ConfigError(f"client_table_max must be >= 1, got {self.client_table_max}")
        if self.read_mode not in constants.READ_MODES:
            raise ConfigError(
                f"read_mode must be one of {', '.join(constants.READ_MODES)}, got {self.read_mode!r}"
            )
        if type(self.require_registration) is not bool:
            raise ConfigError(f"require_registration must be true or false, got {self.require_registration!r}")
        if ":" not in self.app:
            raise ConfigError(f"app must look like package.module:Class, got {self.app!r}")
        unknown = set(self.timeouts) - set(TIMEOUT_KEYS)
        if unknown:
            raise ConfigError(f"unknown [timeouts] keys: {', '.join(sorted(unknown))}")
        if not isinstance(self.proxy, str) or "://" not in self.proxy:
            raise ConfigError(f"the proxy must be a ZeroMQ endpoint (tcp://host:port), got {self.proxy!r}")
        endpoints = [self.proxy]
        for index, address in enumerate(self.replicas):
            for name in ("peer", "heartbeat", "client"):
                value = getattr(address, name)
                if not isinstance(value, str) or "://" not in value:
                    raise ConfigError(f"replica {index} {name} must be a ZeroMQ endpoint, got {value!r}")
                endpoints.append(value)
            if address.watch is not None:
                if not isinstance(address.watch, str) or "://" not in address.watch:
                    raise ConfigError(f"replica {index} watch must be a ZeroMQ endpoint, got {address.watch!r}")
                endpoints.append(address.watch)
        duplicates = {e for e in endpoints if endpoints.count(e) > 1}
        if duplicates:
            raise ConfigError(f"endpoints used twice: {', '.join(sorted(duplicates))}")
        self._check_metrics(endpoints)
        try:
            self.protocol_config()
        except ValueError as error:
            raise ConfigError(f"[timeouts]: {error}") from error

    def _check_ids(self) -> None:
        ids = self.replica_ids
        if ids:
            if len(ids) != len(self.replicas):
                raise ConfigError(f"replica_ids names {len(ids)} replicas, the file lists {len(self.replicas)}")
            bad = [i for i in ids if type(i) is not int or not 0 <= i <= constants.REPLICA_ID_MAX]
            if bad:
                raise ConfigError(f"replica ids must be 0..{constants.REPLICA_ID_MAX}, got {bad[0]!r}")
            if len(set(ids)) != len(ids):
                raise ConfigError(f"a replica id is listed twice: {sorted(i for i in ids if ids.count(i) > 1)}")
            if self.initial_replicas is None and ids != tuple(range(len(ids))):
                raise ConfigError(
                    "[cluster] initial_replicas is needed when the replicas' ids are not 0..n-1: the number of "
                    "replicas the cluster first started with (its first configuration, ids 0..initial_replicas-1)"
                )
        count = self.initial_replicas
        if count is not None and (type(count) is not int or not 1 <= count <= constants.REPLICAS_MAX):
            raise ConfigError(f"initial_replicas must be 1..{constants.REPLICAS_MAX}, got {count!r}")

    @property
    def ids(self) -> tuple[int, ...]:
        """The id of each replica the file lists, in its order."""
        return self.replica_ids or tuple(range(len(self.replicas)))

    @property
    def initial_count(self) -> int:
        """How many replicas the first configuration had (ids 0..n-1, in epoch `epoch`)."""
        return len(self.replicas) if self.initial_replicas is None else self.initial_replicas

    def address_of(self, replica: int) -> ReplicaAddress | None:
        """The endpoints the file gives replica id `replica`, or None if it does not list it."""
        ids = self.ids
        return self.replicas[ids.index(replica)] if replica in ids else None

    def with_replica(self, replica: int, address: ReplicaAddress) -> ClusterConfig:
        """This configuration with replica id `replica` at `address` (replacing what the file said of it)."""
        ids = list(self.ids)
        replicas = list(self.replicas)
        if replica in ids:
            replicas[ids.index(replica)] = address
        else:
            ids.append(replica)
            replicas.append(address)
        initial = self.initial_count
        return dataclasses.replace(
            self, replicas=tuple(replicas), replica_ids=tuple(ids), initial_replicas=initial, metrics_ports=()
        )

    def _check_metrics(self, endpoints: list[str]) -> None:
        if self.metrics_ports and len(self.metrics_ports) != len(self.replicas):
            raise ConfigError(
                f"[metrics] replica_ports needs one port per replica ({len(self.replicas)}), "
                f"got {len(self.metrics_ports)}"
            )
        ports: list[tuple[str, int | None]] = [("replica_ports", port) for port in self.metrics_ports]
        ports += [("proxy_port", self.proxy_metrics_port), ("metrics_port", self.metrics_port)]
        for name, port in ports:
            if port is not None and (type(port) is not int or not 0 <= port <= PORT_MAX):
                raise ConfigError(f"metrics: {name} must be a port number 0..{PORT_MAX}, got {port!r}")
        # The file's ports must not collide with each other or with a ZeroMQ endpoint on the same host (0 is
        # "any free port": never a collision).
        used = [_tcp_host_port(endpoint) for endpoint in endpoints]
        listeners = [self.replica_metrics(i, override=False) for i in self.ids]
        listeners.append(self.proxy_metrics(override=False))
        taken = [where for where in used + listeners if where is not None and where[1] != 0]
        twice = {f"{host}:{port}" for host, port in taken if taken.count((host, port)) > 1}
        if twice:
            raise ConfigError(f"[metrics]: ports used twice on one host: {', '.join(sorted(twice))}")

    def replica_metrics(self, replica: int, *, override: bool = True) -> tuple[str, int] | None:
        """(host, port) of replica `replica`'s /metrics listener, or None when it serves no metrics. With
        `override`, this process's `metrics_port` (flag or environment) beats the file's port."""
        address = self.address_of(replica)
        ids = self.ids
        port = self.metrics_ports[ids.index(replica)] if self.metrics_ports and replica in ids else None
        if override and self.metrics_port is not None:
            port = self.metrics_port
        return None if port is None or address is None else (endpoint_host(address.client), port)

    def proxy_metrics(self, *, override: bool = True) -> tuple[str, int] | None:
        """(host, port) of the proxy's /metrics listener, or None; as `replica_metrics`."""
        port = self.metrics_port if override and self.metrics_port is not None else self.proxy_metrics_port
        return None if port is None else (endpoint_host(self.proxy), port)

    def protocol_config(self) -> Config:
        ticks: dict[str, Any] = {"startup_grace_ticks": constants.STARTUP_GRACE_TICKS, **dict(self.timeouts)}
        return Config(
            replica_count=self.initial_count,
            cluster=self.cluster_id,
            epoch=self.epoch,
            # The node acts on epoch changes (zvsr.runtime.node). Not with CurveZMQ yet: the replicas' keys are
            # loaded by position at start, so a new member's key would be unknown to the others.
            reconfiguration=self.keys_dir is None,
            snapshot_interval_ops=self.snapshot_interval_ops,
            client_table_max=self.client_table_max,
            read_mode=self.read_mode,
            require_registration=self.require_registration,
            **ticks,
        )

    def keys(self) -> Keys | None:
        """The cluster's CurveZMQ keys, or None when security is off."""
        if self.keys_dir is None:
            return None
        try:
            return Keys.load(Path(self.keys_dir), len(self.replicas))
        except SecurityError as error:
            raise ConfigError(f"[security]: {error}") from error

    def client_pair(self) -> KeyPair | None:
        """The CLI tools' key pair (`client_key`), or None when security is off."""
        if self.keys_dir is None:
            return None
        if self.client_key is None:
            raise ConfigError("[security] client_key is needed to connect as a client (e.g. keys/clients/admin)")
        try:
            return read_pair(Path(self.client_key))
        except SecurityError as error:
            raise ConfigError(f"[security]: {error}") from error

    def replica_data_dir(self, replica: int) -> Path | None:
        return None if self.data_dir is None else Path(self.data_dir) / f"replica-{replica}"

    def with_settings(self, settings: Mapping[str, Any]) -> ClusterConfig:
        """This configuration with some top-level settings replaced (None values are ignored)."""
        changes = {k: v for k, v in settings.items() if v is not None}
        if "proxy" in changes:
            changes["proxy"] = str(changes["proxy"])
        return dataclasses.replace(self, **changes)


def endpoint_host(endpoint: str) -> str:
    """The host to bind an HTTP listener beside ZeroMQ endpoint `endpoint` on: ``tcp://HOST:PORT``'s HOST
    (``*`` is every interface, 0.0.0.0; ``[v6]`` loses its brackets); 127.0.0.1 for any other transport."""
    transport, _, rest = endpoint.partition("://")
    if transport != "tcp" or ":" not in rest:
        return DEFAULT_HOST
    host = rest.rpartition(":")[0]
    if host in ("*", ""):
        return "0.0.0.0"
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def _tcp_host_port(endpoint: str) -> tuple[str, int] | None:
    if not endpoint.startswith("tcp://"):
        return None
    port = endpoint.rpartition(":")[2]
    return (endpoint_host(endpoint), int(port)) if port.isdigit() else None


def local_cluster(
    *,
    replicas: int = 3,
    base_port: int = DEFAULT_BASE_PORT,
    host: str = DEFAULT_HOST,
    metrics: bool = False,
    **settings: Any,
) -> ClusterConfig:
    """`zvsr cluster up`'s embedded default: the proxy on base_port, replica i on base_port + 10(i+1) .. +3
    (peer, heartbeat, client, watch). With `metrics`, /metrics of replica i on base_port + 10(i+1) + 4, the
    proxy's on base_port + 4."""
    if not 1 <= base_port <= 65535 - 10 * (replicas + 1):
        raise ConfigError(f"base port {base_port} leaves no room for {replicas} replicas")
    addresses = tuple(
        ReplicaAddress(
            peer=f"tcp://{host}:{base_port + 10 + 10 * i}",
            heartbeat=f"tcp://{host}:{base_port + 11 + 10 * i}",
            client=f"tcp://{host}:{base_port + 12 + 10 * i}",
            watch=f"tcp://{host}:{base_port + 13 + 10 * i}",
        )
        for i in range(replicas)
    )
    if metrics:
        settings = {
            "metrics_ports": tuple(base_port + 14 + 10 * i for i in range(replicas)),
            "proxy_metrics_port": base_port + 4,
            **settings,
        }
    return ClusterConfig(replicas=addresses, proxy=f"tcp://{host}:{base_port}", **settings)


def load_config(
    path: str | Path | None,
    *,
    environment: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> ClusterConfig:
    """File, then environment, then flags; without a file, the local default cluster is the base."""
    settings: dict[str, Any] = {}
    if path is None:
        base = local_cluster()
    else:
        base = _from_file(Path(path))
    for variable, key in ENVIRONMENT.items():
        if environment is not None and variable in environment:
            settings[key] = _parse_environment(variable, key, environment[variable])
    for key, value in (flags or {}).items():
        if value is not None:
            settings[key] = value
    try:
        return base.with_settings(settings)
    except TypeError as error:
        raise ConfigError(f"unknown setting: {error}") from error


def _parse_environment(variable: str, key: str, raw: str) -> Any:
    if key == "require_registration":
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"{variable} must be true or false, got {raw!r}")
        return raw.lower() in ("true", "1")
    if key in INT_KEYS:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be an integer, got {raw!r}") from None
    return raw


def _from_file(path: Path) -> ClusterConfig:
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    known_tables = {"cluster", "replica", "proxy", "node", "timeouts", "security", "metrics"}
    unknown = set(document) - known_tables
    if unknown:
        raise ConfigError(f"{path}: unknown sections: {', '.join(sorted(unknown))}")
    cluster = _table(document, "cluster", {"id", "epoch", "initial_replicas", "tick_ms", "app", "read_mode"}, path)
    proxy = _table(document, "proxy", {"endpoint", "request_timeout_ms"}, path)
    node = _table(
        document,
        "node",
        {
            "data_dir",
            "log_level",
            "log_format",
            "fsync",
            "snapshot_interval_ops",
            "client_table_max",
            "require_registration",
        },
        path,
    )
    timeouts = _table(document, "timeouts", set(TIMEOUT_KEYS), path)
    security = _table(document, "security", {"keys_dir", "client_key"}, path)
    metrics = _table(document, "metrics", {"replica_ports", "proxy_port"}, path)
    replica_ports = metrics.get("replica_ports")
    if replica_ports is not None and (
        not isinstance(replica_ports, list) or not all(type(port) is int for port in replica_ports)
    ):
        raise ConfigError(f"{path}: [metrics] replica_ports must be a list of port numbers, got {replica_ports!r}")
    proxy_port = metrics.get("proxy_port")
    if proxy_port is not None and type(proxy_port) is not int:
        raise ConfigError(f"{path}: [metrics] proxy_port must be a port number, got {proxy_port!r}")
    raw_replicas = document.get("replica")
    if not isinstance(raw_replicas, list) or not raw_replicas:
        raise ConfigError(f"{path}: needs at least one [[replica]] table")
    replicas = []
    ids: list[int] = []
    for index, raw in enumerate(raw_replicas):
        if not isinstance(raw, dict) or not {"peer", "heartbeat", "client"} <= set(raw) <= _REPLICA_KEYS:
            raise ConfigError(
                f"{path}: [[replica]] {index} needs peer, heartbeat and client (id, watch: optional)"
            )
        replica_id = raw.get("id", index)
        if type(replica_id) is not int or replica_id < 0:
            raise ConfigError(f"{path}: [[replica]] {index} id must be a replica id (an integer >= 0)")
        ids.append(replica_id)
        replicas.append(
            ReplicaAddress(
                peer=raw["peer"], heartbeat=raw["heartbeat"], client=raw["client"], watch=raw.get("watch")
            )
        )
    settings: dict[str, Any] = {
        "cluster_id": cluster.get("id"),
        "epoch": cluster.get("epoch"),
        "initial_replicas": cluster.get("initial_replicas"),
        "tick_ms": cluster.get("tick_ms"),
        "app": cluster.get("app"),
        "read_mode": cluster.get("read_mode"),
        "proxy": proxy.get("endpoint"),
        "request_timeout_ms": proxy.get("request_timeout_ms"),
        "data_dir": node.get("data_dir"),
        "log_level": node.get("log_level"),
        "log_format": node.get("log_format"),
        "fsync": node.get("fsync"),
        "snapshot_interval_ops": node.get("snapshot_interval_ops"),
        "client_table_max": node.get("client_table_max"),
        "require_registration": node.get("require_registration"),
        "keys_dir": security.get("keys_dir"),
        "client_key": security.get("client_key"),
        "metrics_ports": None if replica_ports is None else tuple(replica_ports),
        "proxy_metrics_port": proxy_port,
    }
    for key in INT_KEYS:
        value = settings.get(key)  # metrics_port is not a file setting (flag and environment only)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"{path}: {key} must be an integer, got {value!r}")
    for key, value in timeouts.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{path}: [timeouts] {key} must be an integer, got {value!r}")
    for key in ("data_dir", "keys_dir", "client_key"):  # relative to the file
        if settings[key] is not None:
            if not isinstance(settings[key], str):
                raise ConfigError(f"{path}: {key} must be a string, got {settings[key]!r}")
            value = Path(settings[key])
            settings[key] = str(value if value.is_absolute() else path.parent / value)
    present = {k: v for k, v in settings.items() if v is not None}
    explicit_ids = tuple(ids) if any("id" in raw for raw in raw_replicas) else ()
    try:
        return ClusterConfig(
            replicas=tuple(replicas), replica_ids=explicit_ids, timeouts=dict(timeouts), **present
        )
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error


def _table(document: Mapping[str, Any], name: str, keys: set[str], path: Path) -> dict[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    unknown = set(table) - keys
    if unknown:
        raise ConfigError(f"{path}: unknown keys in [{name}]: {', '.join(sorted(unknown))}")
    return table


def to_toml(config: ClusterConfig) -> str:
    """Write a configuration back as a TOML file that `load_config` reads to the same value."""
    lines = [
        "[cluster]",
        f"id = {config.cluster_id}",
        f"epoch = {config.epoch}",
        *([] if config.initial_replicas is None else [f"initial_replicas = {config.initial_replicas}"]),
        f"tick_ms = {config.tick_ms}",
        f"app = {_quote(config.app)}",
        f"read_mode = {_quote(config.read_mode)}",
        "",
    ]
    for replica, address in zip(config.ids, config.replicas, strict=True):
        lines += [
            "[[replica]]",
            *([f"id = {replica}"] if config.replica_ids else []),
            f"peer = {_quote(address.peer)}",
            f"heartbeat = {_quote(address.heartbeat)}",
            f"client = {_quote(address.client)}",
            *([] if address.watch is None else [f"watch = {_quote(address.watch)}"]),
            "",
        ]
    lines += ["[proxy]", f"endpoint = {_quote(config.proxy)}"]
    lines += [f"request_timeout_ms = {config.request_timeout_ms}", ""]
    lines += ["[node]"]
    if config.data_dir is not None:
        lines.append(f"data_dir = {_quote(config.data_dir)}")
    lines += [f"log_level = {_quote(config.log_level)}", f"log_format = {_quote(config.log_format)}"]
    lines += [f"fsync = {_quote(config.fsync)}", f"snapshot_interval_ops = {config.snapshot_interval_ops}"]
    lines += [f"client_table_max = {config.client_table_max}"]
    lines += [f"require_registration = {'true' if config.require_registration else 'false'}", ""]
    if config.keys_dir is not None:
        lines += ["[security]", f"keys_dir = {_quote(config.keys_dir)}"]
        if config.client_key is not None:
            lines.append(f"client_key = {_quote(config.client_key)}")
        lines.append("")
    if config.metrics_ports or config.proxy_metrics_port is not None:
        lines.append("[metrics]")
        if config.metrics_ports:
            lines.append(f"replica_ports = [{', '.join(str(port) for port in config.metrics_ports)}]")
        if config.proxy_metrics_port is not None:
            lines.append(f"proxy_port = {config.proxy_metrics_port}")
        lines.append("")
    if config.timeouts:
        lines.append("[timeouts]")
        lines += [f"{key} = {value}" for key, value in sorted(config.timeouts.items())]
        lines.append("")
    return "\n".join(lines)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
