"""The `zvsr` command line (click). Each subcommand is a thin shell over the layer it drives.

- `zvsr cluster up`   a local cluster (N replicas + a proxy as child processes) with an embedded default config
- `zvsr node`         one replica, from a cluster file (production launcher)
- `zvsr proxy`        a client proxy, from a cluster file
- `zvsr kv …`         the built-in coordination app from the shell, through a proxy
- `zvsr status`       view, role, op and commit numbers of every replica
- `zvsr sim`, `zvsr lincheck`   the simulator and the linearizability checker
- `zvsr bench`        latency, throughput, failover and durability figures against baselines
- `zvsr fuzz`         malformed frames at every socket of a local cluster under load, then checks
- `zvsr chaos`        network and process faults between real processes in namespaces, then checks (root)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zvsr import __version__
from zvsr.bench.cli import bench_command
from zvsr.chaos.cli import chaos_command
from zvsr.constants import CLIENT_TIMEOUT_MS, REPLICAS_MAX, STATUS_TIMEOUT_MS
from zvsr.fuzz.cli import fuzz_command
from zvsr.lincheck.cli import lincheck_command
from zvsr.runtime.cluster_config import (
    DEFAULT_BASE_PORT,
    ENVIRONMENT,
    FSYNC_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    ClusterConfig,
    ConfigError,
    load_config,
)
from zvsr.sim.cli import sim_command

if TYPE_CHECKING:
    from zvsr.client import Client


@click.group()
@click.version_option(__version__, prog_name="zvsr")
def main() -> None:
    """zvsr: Viewstamped Replication over ZeroMQ."""


main.add_command(sim_command, "sim")
main.add_command(lincheck_command, "lincheck")
main.add_command(bench_command, "bench")
main.add_command(fuzz_command, "fuzz")
main.add_command(chaos_command, "chaos")


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key in ENVIRONMENT}


def load(config_path: str | None, **flags: Any) -> ClusterConfig:
    try:
        return load_config(config_path, environment=_environment(), flags=flags)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="ZVSR_CONFIG",
    help="Cluster file (TOML). Without one, the local default cluster of `zvsr cluster up`.",
)
log_options = [
    click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None, help="Default: info."),
    click.option("--log-format", type=click.Choice(LOG_FORMATS), default=None, help="Default: text."),
]


def with_log_options(function: Any) -> Any:
    for option in reversed(log_options):
        function = option(function)
    return function


metrics_port_option = click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus /metrics on this port, on the host of this process's endpoint (overrides "
    "ZVSR_METRICS_PORT and the file's [metrics]; 0: any free port). Default: off unless configured.",
)


@main.command("node")
@config_option
@click.option("--replica", type=click.IntRange(min=0), required=True, help="This replica's index in the file.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Overrides [node] data_dir.")
@click.option("--app", default=None, help="Replicated state machine, package.module:Class.")
@click.option(
    "--init",
    is_flag=True,
    help="First start of a NEW cluster: an empty data dir starts in view 0. Without it an empty data dir means "
    "a lost disk, and the replica recovers its state from the others.",
)
@click.option(
    "--fsync",
    type=click.Choice(FSYNC_MODES),
    default=None,
    help="always (default): acknowledged writes survive power loss; never: only process crashes.",
)
@click.option(
    "--snapshot-interval",
    "snapshot_interval_ops",
    type=click.IntRange(min=0),
    default=None,
    help="Snapshot the app and truncate the log every N committed ops (default 10000; 0: never).",
)
@metrics_port_option
@with_log_options
def node_command(
    config_path: str | None,
    replica: int,
    data_dir: str | None,
    app: str | None,
    init: bool,
    fsync: str | None,
    snapshot_interval_ops: int | None,
    metrics_port: int | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Run one replica until SIGTERM / Ctrl-C."""
    from zvsr.runtime.node import serve_node

    config = load(
        config_path,
        data_dir=data_dir,
        app=app,
        fsync=fsync,
        snapshot_interval_ops=snapshot_interval_ops,
        metrics_port=metrics_port,
        log_level=log_level,
        log_format=log_format,
    )
    if replica >= len(config.replicas):
        raise click.ClickException(f"--replica {replica}: the cluster has replicas 0..{len(config.replicas) - 1}")
    serve_node(config, replica, init=init)


@main.command("proxy")
@config_option
@click.option("--endpoint", default=None, help="Client-facing endpoint to bind (overrides [proxy] endpoint).")
@metrics_port_option
@with_log_options
def proxy_command(
    config_path: str | None,
    endpoint: str | None,
    metrics_port: int | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Run a client proxy until SIGTERM / Ctrl-C: it always finds the current primary."""
    from zvsr.runtime.proxy import serve_proxy

    config = load(
        config_path, proxy=endpoint, metrics_port=metrics_port, log_level=log_level, log_format=log_format
    )
    serve_proxy(config)


@main.group("cluster")
def cluster_group() -> None:
    """A local cluster for development and tests."""


@cluster_group.command("up")
@click.option("--replicas", type=click.IntRange(1, REPLICAS_MAX), default=3, show_default=True)
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65000),
    default=DEFAULT_BASE_PORT,
    show_default=True,
    help="The proxy listens here (its /metrics on base+4); replica i on base+10(i+1) .. +3, its /metrics on +4.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep data here (default: a temporary directory, removed on exit).",
)
@click.option("--app", default=None, help="Replicated state machine, package.module:Class.")
@with_log_options
def cluster_up_command(
    replicas: int,
    base_port: int,
    data_dir: str | None,
    app: str | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Start REPLICAS replicas and a proxy as child processes; Ctrl-C or SIGTERM stops them all."""
    from zvsr.runtime.launcher import run_local_cluster

    settings = {"app": app, "log_level": log_level, "log_format": log_format}
    code = run_local_cluster(
        replicas=replicas,
        base_port=base_port,
        data_dir=Path(data_dir) if data_dir else None,
        settings={k: v for k, v in settings.items() if v is not None},
        echo=click.echo,
    )
    raise SystemExit(code)


@main.command("keygen")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default="keys", show_default=True)
@click.option("--replicas", type=click.IntRange(1, REPLICAS_MAX), default=3, show_default=True)
@click.option("--client", "clients", multiple=True, help="A client key pair to create (repeatable).")
def keygen_command(directory: str, replicas: int, clients: tuple[str, ...]) -> None:
    """Create CurveZMQ key pairs: one per replica, the proxies', `admin` (the CLI tools) and each --client.

    Secret files are mode 0600; existing keys are never overwritten. Then add to the cluster file:
    [security] keys_dir = "<dir>", client_key = "<dir>/clients/admin.key_secret" (docs/security.md).
    """
    from zvsr.runtime.security import SecurityError, generate

    try:
        written = generate(Path(directory), replicas=replicas, clients=clients)
    except SecurityError as error:
        raise click.ClickException(str(error)) from error
    for path in written:
        click.echo(str(path))


@main.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document with every replica's status.")
@click.option("--timeout-ms", type=click.IntRange(min=1), default=STATUS_TIMEOUT_MS, show_default=True)
def status_command(config_path: str | None, as_json: bool, timeout_ms: int) -> None:
    """View, status, role, op_number, commit_number, last heard and lag of every replica."""
    from zvsr.runtime.status import collect_status, format_status

    config = load(config_path)
    report = collect_status(config, timeout_ms=timeout_ms)
    click.echo(json.dumps(report, indent=2, sort_keys=True) if as_json else format_status(report))
    if not any(entry.get("reachable") for entry in report["replicas"]):
        raise SystemExit(1)


# --- zvsr kv -------------------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A JSON value if the text is one (`1`, `true`, `"x"`, `[1,2]`), otherwise the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@main.group("kv")
@config_option
@click.option(
    "--proxy",
    "proxy_endpoint",
    default=None,
    envvar="ZVSR_PROXY",
    help="Proxy endpoint (default: the local cluster's, tcp://127.0.0.1:7700).",
)
@click.option("--timeout-ms", type=click.IntRange(min=1), default=CLIENT_TIMEOUT_MS, show_default=True)
@click.pass_context
def kv_group(
    context: click.Context, config_path: str | None, proxy_endpoint: str | None, timeout_ms: int
) -> None:
    """The built-in coordination app: values are JSON when they parse as JSON, strings otherwise."""
    config = load(config_path)
    context.obj = {"proxy": proxy_endpoint or config.proxy, "timeout_ms": timeout_ms, "config": config}


@contextmanager
def kv_client(context: click.Context) -> Iterator[Client]:
    """A client to the kv group's proxy; a ZvsrError in the block becomes a ClickException ("code: message")."""
    from zvsr.client import Client, ZvsrError, curve_for_proxy

    settings = context.find_object(dict)
    assert settings is not None
    try:
        curve = curve_for_proxy(settings["config"])
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    try:
        with Client(settings["proxy"], timeout_ms=settings["timeout_ms"], curve=curve) as client:
            yield client
    except ZvsrError as error:
        raise click.ClickException(f"{error.code}: {error}") from error


def run_kv(context: click.Context, operation: dict[str, Any]) -> None:
    with kv_client(context) as client:
        result = client.execute(operation)
    echo_json(result)


def echo_json(result: Any) -> None:
    click.echo(json.dumps(result, default=_json_default))


def seconds_to_ms(seconds: float) -> int:
    """Whole milliseconds; a positive duration is at least 1 ms."""
    return max(1, round(seconds * 1000)) if seconds > 0 else 0


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot show {type(value).__name__}")


@kv_group.command("get")
@click.argument("key")
@click.pass_context
def kv_get(context: click.Context, key: str) -> None:
    """Print KEY's value (null if missing)."""
    run_kv(context, {"op": "get", "key": key})


lease_id_option = click.option(
    "--lease", "lease_id", type=int, default=None, metavar="ID", help="Attach to this lease (`kv lease grant`)."
)


@kv_group.command("put")
@click.argument("key")
@click.argument("value")
@lease_id_option
@click.pass_context
def kv_put(context: click.Context, key: str, value: str, lease_id: int | None) -> None:
    """Set KEY to VALUE; with --lease, KEY is deleted when the lease ends."""
    operation = {"op": "put", "key": key, "value": parse_value(value)}
    if lease_id is not None:
        operation["lease"] = lease_id
    run_kv(context, operation)


@kv_group.command("del")
@click.argument("key")
@click.pass_context
def kv_delete(context: click.Context, key: str) -> None:
    """Delete KEY; prints whether it existed."""
    run_kv(context, {"op": "delete", "key": key})


@kv_group.command("cas")
@click.argument("key")
@click.argument("expected")
@click.argument("new")
@click.pass_context
def kv_cas(context: click.Context, key: str, expected: str, new: str) -> None:
    """Set KEY to NEW if it equals EXPECTED (`null`: if missing)."""
    run_kv(context, {"op": "cas", "key": key, "expected": parse_value(expected), "new": parse_value(new)})


@kv_group.command("incr")
@click.argument("key")
@click.option("--by", type=int, default=1, show_default=True)
@click.pass_context
def kv_incr(context: click.Context, key: str, by: int) -> None:
    """Add BY to the integer at KEY (missing counts as 0); prints the new value."""
    run_kv(context, {"op": "incr", "key": key, "by": by})


@kv_group.command("lock")
@click.argument("name")
@click.argument("owner")
@click.option(
    "--ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Grant a lease of this length for the lock and print its id: keep it alive with `kv lease keepalive`.",
)
@lease_id_option
@click.pass_context
def kv_lock(context: click.Context, name: str, owner: str, ttl: float | None, lease_id: int | None) -> None:
    """Acquire lock NAME for OWNER; prints ok, holder and fencing token (and the lease, with --ttl).

    With --lease or --ttl the lock is released when the lease ends; a lock whose lease expired may stay
    unavailable for the lease's lock delay (the answer then has delay_ms).
    """
    if ttl is not None and lease_id is not None:
        raise click.UsageError("give --ttl or --lease, not both")
    if ttl is None:
        operation: dict[str, Any] = {"op": "lock", "name": name, "owner": owner}
        if lease_id is not None:
            operation["lease"] = lease_id
        run_kv(context, operation)
        return
    with kv_client(context) as client:
        result = client.lock(name, owner, ttl=seconds_to_ms(ttl) / 1000)
    answer: dict[str, Any] = {"ok": result.ok, "owner": result.owner, "token": result.token}
    if result.lease is not None:
        answer["lease"] = result.lease
    if result.delay_ms:
        answer["delay_ms"] = result.delay_ms
    echo_json(answer)


@kv_group.command("unlock")
@click.argument("name")
@click.argument("owner")
@click.pass_context
def kv_unlock(context: click.Context, name: str, owner: str) -> None:
    """Release lock NAME held by OWNER."""
    run_kv(context, {"op": "unlock", "name": name, "owner": owner})


@kv_group.group("lease")
def kv_lease_group() -> None:
    """Leases: keys (`kv put --lease`) and locks (`kv lock --lease`) that end when their lease does.

    A lease ends TTL seconds of cluster time after its grant or latest keepalive, or when revoked.
    """


@kv_lease_group.command("grant")
@click.option(
    "--ttl", type=click.FloatRange(min=0, min_open=True), required=True, metavar="SECONDS", help="Time to live."
)
@click.option(
    "--lock-delay",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="When the lease expires, its locks stay unavailable this long.",
)
@click.pass_context
def kv_lease_grant(context: click.Context, ttl: float, lock_delay: float) -> None:
    """Grant a lease; prints its id and ttl_ms."""
    operation: dict[str, Any] = {"op": "lease_grant", "ttl_ms": seconds_to_ms(ttl)}
    if lock_delay > 0:
        operation["lock_delay_ms"] = seconds_to_ms(lock_delay)
    run_kv(context, operation)


@kv_lease_group.command("keepalive")
@click.argument("lease_id", metavar="ID", type=int)
@click.pass_context
def kv_lease_keepalive(context: click.Context, lease_id: int) -> None:
    """Renew lease ID for a full ttl; prints the milliseconds it has left."""
    run_kv(context, {"op": "lease_keepalive", "lease": lease_id})


@kv_lease_group.command("revoke")
@click.argument("lease_id", metavar="ID", type=int)
@click.pass_context
def kv_lease_revoke(context: click.Context, lease_id: int) -> None:
    """End lease ID now: deletes its keys and releases its locks; prints ok and the keys deleted."""
    run_kv(context, {"op": "lease_revoke", "lease": lease_id})


@kv_lease_group.command("ttl")
@click.argument("lease_id", metavar="ID", type=int)
@click.pass_context
def kv_lease_ttl(context: click.Context, lease_id: int) -> None:
    """Print lease ID's ttl_ms, remaining_ms, keys and locks."""
    run_kv(context, {"op": "lease_ttl", "lease": lease_id})


@kv_lease_group.command("list")
@click.pass_context
def kv_lease_list(context: click.Context) -> None:
    """Print the ids of every live lease."""
    run_kv(context, {"op": "lease_list"})


# --- zvsr backup, zvsr restore -------------------------------------------------------------------------------


@main.command("backup")
@config_option
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
@click.option(
    "--timeout-ms",
    type=click.IntRange(min=1),
    default=None,
    help="Wait this long for each answer of a replica (default: BACKUP_TIMEOUT_MS, 10 s).",
)
@click.option(
    "--replica", type=click.IntRange(min=0), default=None, help="Back up this replica (default: the primary)."
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Have the replica encode its state now (at its commit_number) instead of sending its latest snapshot.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was saved as one JSON document.")
def backup_command(
    config_path: str | None, out: str, timeout_ms: int | None, replica: int | None, fresh: bool, as_json: bool
) -> None:
    """Save a verified copy of the primary's latest snapshot (state and client table after op N) to OUT.

    Ops after N are not in it. Restore it into a new cluster with `zvsr restore` (docs/operations.md).
    """
    from zvsr.constants import BACKUP_TIMEOUT_MS
    from zvsr.runtime.backup import BackupError, take_backup

    config = load(config_path)
    timeout_ms = BACKUP_TIMEOUT_MS if timeout_ms is None else timeout_ms
    try:
        report = take_backup(config, Path(out), replica=replica, fresh=fresh, timeout_ms=timeout_ms)
    except BackupError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    source = "a fresh snapshot" if fresh else "the latest snapshot"
    role = f"{report['role']} of view {report['view']}"
    click.echo(f"saved {report['path']}: {source} of replica {report['replica']} ({role})")
    click.echo(f"  cluster {report['cluster']}, op_number {report['op_number']} (every op up to it, none after)")
    click.echo(f"  cluster time {report['cluster_time_ns']} ns")
    click.echo(f"  {report['size']} bytes, blake2b-16 {report['blake2b']}")
    click.echo("  verified: read back from disk, checksum matches, the snapshot decodes at that op")


@main.command("restore")
@click.argument("backup", type=click.Path(dir_okay=False, exists=True))
@config_option
@click.option("--replica", type=click.IntRange(min=0), required=True, help="The replica whose data dir to seed.")
@click.option(
    "--force-cluster-id",
    is_flag=True,
    help="Restore a backup of another cluster id into this cluster (e.g. a staging copy of production).",
)
def restore_command(backup: str, config_path: str | None, replica: int, force_cluster_id: bool) -> None:
    """Seed replica N's empty data dir of a NEW cluster from BACKUP.

    Restore every replica of the cluster from the same backup, then start each with `zvsr node` (no --init):
    they start in view 0 with the backup's state and op number.
    """
    from zvsr.runtime.backup import BackupError, restore

    config = load(config_path)
    try:
        report = restore(Path(backup), config, replica, force_cluster_id=force_cluster_id)
    except BackupError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"restored replica {report['replica']} into {report['data_dir']}: op {report['op_number']} of cluster "
        f"{report['cluster']} ({report['size']} bytes, blake2b-16 {report['blake2b']}); start it with "
        f"`zvsr node --replica {report['replica']}` (no --init)"
    )
