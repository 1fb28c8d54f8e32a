"""The `zvsr` command line (click). Each subcommand is a thin shell over the layer it drives.

- `zvsr cluster up`   a local cluster (N replicas + a proxy as child processes) with an embedded default config
- `zvsr node`         one replica, from a cluster file (production launcher)
- `zvsr proxy`        a client proxy, from a cluster file
- `zvsr kv …`         the built-in coordination app from the shell, through a proxy
- `zvsr status`       view, role, op and commit numbers of every replica
- `zvsr member …`     list the replicas' configuration; add, remove or replace a replica (reconfiguration);
                      hand the primary role to another replica (transfer)
- `zvsr backup`, `zvsr restore`   a verified copy of the primary's snapshot; a new cluster seeded from one
- `zvsr watch`        the committed changes under a key prefix, as they happen (`zvsr.watch_cli`)
- `zvsr sim`, `zvsr lincheck`   the simulator and the linearizability checker
- `zvsr bench`        latency, throughput, failover and durability figures against baselines
- `zvsr chaos`        network and process faults between real processes in namespaces, then checks (root)
- `zvsr fuzz`         malformed frames at every socket of a local cluster under load, then checks

The client-side commands (kv, status, watch, backup) share --config, --proxy, --timeout-ms and --json, typed
before or after the command's name, and find a running `zvsr cluster up`'s cluster on their own
(`zvsr.cli_options`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zvsr import __version__
from zvsr.bench.cli import bench_command
from zvsr.chaos.cli import chaos_command
from zvsr.cli_options import ClientSettings, check_outer_options, client_command, client_options
from zvsr.constants import (
    BACKUP_TIMEOUT_MS,
    CLIENT_TIMEOUT_MS,
    MEMBER_TIMEOUT_MS,
    READ_MODES,
    REPLICAS_MAX,
    STATUS_TIMEOUT_MS,
)
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
from zvsr.watch_cli import watch_command

if TYPE_CHECKING:
    from zvsr.client import Client


@click.group()
@click.version_option(__version__, prog_name="zvsr")
@client_options("config", "proxy", "timeout_ms", "json")
@click.pass_context
def main(context: click.Context) -> None:
    """zvsr: Viewstamped Replication over ZeroMQ.

    The client-side commands (kv, status, watch, backup) take --config, --proxy, --timeout-ms and --json before or
    after their name; given twice, the later one wins.
    """
    check_outer_options(context)


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
@click.option(
    "--replica",
    type=click.IntRange(min=0),
    required=True,
    help="This replica's id (its position in the file, unless the file gives ids).",
)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Overrides [node] data_dir.")
@click.option("--app", default=None, help="Replicated state machine, package.module:Class.")
@click.option(
    "--init",
    is_flag=True,
    help="First start of a NEW cluster: an empty data dir starts in view 0. Without it an empty data dir means "
    "a lost disk, and the replica recovers its state from the others.",
)
@click.option(
    "--join",
    is_flag=True,
    help="First start of a replica ADDED to a running cluster (`zvsr member add` / `replace`): it waits until a "
    "configuration includes it, then catches up from the members. Ignored on a restart.",
)
@click.option(
    "--address",
    default=None,
    metavar="ENDPOINTS",
    help="This replica's endpoints, for one the file does not list: tcp://HOST:PORT (peer PORT, heartbeat +1, "
    "client +2, watch +3) or peer=EP,heartbeat=EP,client=EP[,watch=EP]. As given to `zvsr member add`.",
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
    join: bool,
    address: str | None,
    fsync: str | None,
    snapshot_interval_ops: int | None,
    metrics_port: int | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Run one replica until SIGTERM / Ctrl-C, or until a reconfiguration removed it and the new members took
    over (it then exits 0: "left the configuration in epoch N")."""
    from zvsr.runtime.members import parse_address
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
    if address is not None:
        try:
            config = config.with_replica(replica, parse_address(address))
        except (ValueError, ConfigError) as error:
            raise click.BadParameter(str(error), param_hint="--address") from error
    elif replica not in config.ids and (join or init):
        raise click.ClickException(
            f"--replica {replica}: the cluster file lists replicas {', '.join(map(str, config.ids))}; give a new "
            "replica's endpoints with --address (or add it to the file)"
        )
    serve_node(config, replica, init=init, join=join)


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
@click.option(
    "--read-mode",
    type=click.Choice(READ_MODES),
    default=None,
    help="How the app's read-only ops are served (default: read_index; docs/operations.md).",
)
@with_log_options
def cluster_up_command(
    replicas: int,
    base_port: int,
    data_dir: str | None,
    app: str | None,
    read_mode: str | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Start REPLICAS replicas and a proxy as child processes; Ctrl-C or SIGTERM stops them all."""
    from zvsr.runtime.launcher import run_local_cluster

    settings = {"app": app, "read_mode": read_mode, "log_level": log_level, "log_format": log_format}
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
@client_command("config", "timeout_ms", "json", timeout_ms=STATUS_TIMEOUT_MS)
def status_command(settings: ClientSettings) -> None:
    """View, status, role, op_number, commit_number, lag, watch endpoint, metrics URL and last heard of every
    replica (--json: one JSON document with everything each replica reports). Exits 1 if none answers."""
    from zvsr.runtime.status import collect_status, format_status

    report = collect_status(settings.config, timeout_ms=settings.timeout_ms)
    click.echo(json.dumps(report, indent=2, sort_keys=True) if settings.as_json else format_status(report))
    if not any(entry.get("reachable") for entry in report["replicas"]):
        raise settings.unreachable(f"no replica answered within {settings.timeout_ms} ms", replicas=True)


# --- zvsr member ---------------------------------------------------------------------------------------------

MEMBER_OPTIONS = ("config", "proxy", "timeout_ms", "json")
member_command = client_command(*MEMBER_OPTIONS, timeout_ms=MEMBER_TIMEOUT_MS)
write_config_option = click.option(
    "--write-config",
    "write_config",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    metavar="FILE",
    help="Also write a cluster file naming the (new) configuration's members, for proxies, clients and nodes.",
)
direct_option = click.option(
    "--direct", is_flag=True, help="Send the change straight to the primary instead of through the proxy."
)
address_option = click.option(
    "--address",
    required=True,
    metavar="ENDPOINTS",
    help="The new replica's endpoints: tcp://HOST:PORT (peer PORT, heartbeat +1, client +2, watch +3) or "
    "peer=EP,heartbeat=EP,client=EP[,watch=EP].",
)
new_id_option = click.option(
    "--id",
    "new_id",
    type=click.IntRange(min=0),
    default=None,
    help="The new replica's id (default: the next unused).",
)


@main.group("member")
@client_options(*MEMBER_OPTIONS, timeout_ms=str(MEMBER_TIMEOUT_MS))
def member_group() -> None:
    """The replicas' configuration (VR Revisited §7): list it; add, remove or replace a replica while the
    cluster serves. Changes go through the proxy (--direct: straight to the primary); the replicas' durable state,
    not the cluster file, says who is a member. See docs/operations.md "Changing the replicas"."""


def _member_current(settings: ClientSettings) -> Any:
    from zvsr.runtime.reconfigure import Unreachable, current

    try:
        return current(settings.config, timeout_ms=min(settings.timeout_ms, STATUS_TIMEOUT_MS))
    except Unreachable as error:
        raise settings.unreachable(str(error), replicas=True) from error


def _write_member_config(settings: ClientSettings, membership: Any, path: str | None) -> None:
    if path is None:
        return
    from zvsr.runtime.reconfigure import ReconfigurationError, write_config

    try:
        write_config(settings.config, membership, Path(path))
    except (ReconfigurationError, OSError) as error:
        raise click.ClickException(f"cannot write {path}: {error}") from error
    if not settings.as_json:
        click.echo(f"wrote {path}: epoch {membership.epoch}, replicas {', '.join(map(str, membership.ids))}")


@member_group.command("list")
@write_config_option
@member_command
def member_list(write_config: str | None, settings: ClientSettings) -> None:
    """The current configuration: epoch, members with their status and endpoints; replicas that answer but are no
    members (leaving, or not added yet) below."""
    from zvsr.runtime.members import member_addresses
    from zvsr.runtime.status import format_membership

    now = _member_current(settings)
    statuses = {e["replica"]: e for e in now.report["replicas"] if e.get("reachable")}
    if settings.as_json:
        members = now.report["membership"]
        click.echo(
            json.dumps({"membership": members, "primary": now.primary, "statuses": statuses}, sort_keys=True)
        )
    else:
        membership = now.membership
        click.echo(format_membership(now.report["membership"]).splitlines()[0])
        addresses = member_addresses(membership)
        for replica in membership.ids:
            entry = statuses.get(replica)
            state = "unreachable" if entry is None else f"{entry.get('status')} {entry.get('role')}"
            address = addresses.get(replica)
            where = "endpoints unknown"
            if address is not None:
                where = f"peer {address.peer}  heartbeat {address.heartbeat}  client {address.client}"
                where += f"  watch {address.watch}" if address.watch else ""
            click.echo(f"  r{replica:<3} {state:<22} {where}")
        for replica in sorted(set(statuses) - set(membership.ids)):
            entry = statuses[replica]
            click.echo(f"  r{replica:<3} {entry.get('status')} in epoch {entry.get('epoch')}: not a member")
    _write_member_config(settings, now.membership, write_config)


def _parsed_address(address: str) -> Any:
    from zvsr.runtime.members import parse_address

    try:
        return parse_address(address)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--address") from error


def _run_member_change(
    settings: ClientSettings, make_plan: Callable[[Any], Any], direct: bool, write_config: str | None
) -> None:
    """Fetch the current configuration, plan the change from it (a refused plan is a one-line error), send it."""
    from zvsr.runtime.members import describe
    from zvsr.runtime.reconfigure import (
        ReconfigurationError,
        ReconfigurationRefused,
        ReconfigurationTimeout,
        submit,
    )

    try:
        plan = make_plan(_member_current(settings))
    except ReconfigurationError as error:
        raise click.ClickException(str(error)) from error
    old = plan.current.membership
    try:
        epoch = submit(settings.config, plan, timeout_ms=settings.timeout_ms, direct=direct)
    except ReconfigurationRefused as error:
        raise click.ClickException(f"refused ({error.code}): {error}") from error
    except ReconfigurationTimeout as error:
        raise click.ClickException(f"timeout: {error}") from error
    except ReconfigurationError as error:
        raise click.ClickException(str(error)) from error
    new = old.next(plan.members, start_op=0, start_view=0)
    if settings.as_json:
        document = {
            "old_epoch": old.epoch,
            "epoch": epoch,
            "members": list(plan.ids),
            "added": sorted(plan.added),
            "removed": list(plan.removed),
            "membership": {k: v for k, v in describe(new).items() if k in ("members", "highest_id")},
        }
        click.echo(json.dumps(document, sort_keys=True))
    else:
        old_ids = ", ".join(map(str, old.ids))
        click.echo(f"epoch {old.epoch} -> {epoch}: members {old_ids} -> {', '.join(map(str, plan.ids))}")
        for replica, address in sorted(plan.added.items()):
            watch = f", watch {address.watch}" if address.watch else ""
            click.echo(
                f"  added r{replica}: peer {address.peer}, heartbeat {address.heartbeat}, client {address.client}"
                f"{watch}"
            )
            click.echo(
                f"    start it if it is not running: zvsr node --config FILE --replica {replica} --join "
                f"--address peer={address.peer},heartbeat={address.heartbeat},client={address.client}"
                + (f",watch={address.watch}" if address.watch else "")
            )
        for replica in plan.removed:
            click.echo(
                f"  removed r{replica}: it stops by itself (exit 0) once the new members started epoch {epoch}"
            )
    _write_member_config(settings, new, write_config)


@member_group.command("add")
@address_option
@new_id_option
@direct_option
@write_config_option
@member_command
def member_add(
    address: str, new_id: int | None, direct: bool, write_config: str | None, settings: ClientSettings
) -> None:
    """Add a replica listening at --address: a new epoch with it as a member. Start it with `zvsr node --join`
    (before or after); it catches up from the members and then counts."""
    from zvsr.runtime.reconfigure import plan_add

    parsed = _parsed_address(address)
    _run_member_change(settings, lambda now: plan_add(now, parsed, replica=new_id), direct, write_config)


@member_group.command("remove")
@click.argument("replica", type=click.IntRange(min=0))
@direct_option
@write_config_option
@member_command
def member_remove(replica: int, direct: bool, write_config: str | None, settings: ClientSettings) -> None:
    """Remove replica REPLICA: a new epoch without it. It hands over and exits by itself."""
    from zvsr.runtime.reconfigure import plan_remove

    _run_member_change(settings, lambda now: plan_remove(now, replica), direct, write_config)


@member_group.command("replace")
@click.argument("replica", type=click.IntRange(min=0))
@address_option
@new_id_option
@direct_option
@write_config_option
@member_command
def member_replace(
    replica: int,
    address: str,
    new_id: int | None,
    direct: bool,
    write_config: str | None,
    settings: ClientSettings,
) -> None:
    """Replace replica REPLICA (a dead host, say) by a new replica at --address, in one reconfiguration."""
    from zvsr.runtime.reconfigure import plan_replace

    parsed = _parsed_address(address)
    _run_member_change(
        settings, lambda now: plan_replace(now, replica, parsed, new_id=new_id), direct, write_config
    )


@member_group.command("transfer")
@click.argument("replica", type=click.IntRange(min=0))
@member_command
def member_transfer(replica: int, settings: ClientSettings) -> None:
    """Hand the primary role to replica REPLICA (planned maintenance): the primary starts the view change to the
    next view REPLICA leads, so no failure-detection timeout passes. Waits until REPLICA is primary in normal
    status; exits 1 with the reason if it was refused or did not happen within --timeout-ms. See
    docs/operations.md "Rolling restart"."""
    from zvsr.runtime.reconfigure import Unreachable
    from zvsr.runtime.transfer import TransferError, TransferRefused, transfer

    try:
        done = transfer(settings.config, replica, timeout_ms=settings.timeout_ms)
    except Unreachable as error:
        raise settings.unreachable(str(error), replicas=True) from error
    except TransferRefused as error:
        raise click.ClickException(f"refused ({error.code}): {error}") from error
    except TransferError as error:
        raise click.ClickException(str(error)) from error
    elapsed_ms = round(done.elapsed_s * 1000)
    if settings.as_json:
        document = {
            "old_primary": done.old_primary,
            "primary": done.new_primary,
            "old_view": done.old_view,
            "view": done.new_view,
            "elapsed_ms": elapsed_ms,
        }
        click.echo(json.dumps(document, sort_keys=True))
    else:
        click.echo(
            f"primary {done.old_primary} -> {done.new_primary} (view {done.old_view} -> {done.new_view}) "
            f"in {elapsed_ms} ms"
        )


main.add_command(watch_command, "watch")  # zvsr.watch_cli


# --- zvsr kv -------------------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A JSON value if the text is one (`1`, `true`, `"x"`, `[1,2]`), otherwise the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


KV_OPTIONS = ("config", "proxy", "timeout_ms", "json")
# Every kv command: the shared options (also accepted after `zvsr kv` and `zvsr kv lease`), and its settings.
kv_command = client_command(*KV_OPTIONS, timeout_ms=CLIENT_TIMEOUT_MS)


@main.group("kv")
@client_options(*KV_OPTIONS, timeout_ms=str(CLIENT_TIMEOUT_MS))
def kv_group() -> None:
    """The built-in coordination app, through a proxy: values are JSON when they parse as JSON, strings
    otherwise; every answer is printed as JSON. --config, --proxy, --timeout-ms and --json go before or after
    the command's name (`zvsr kv put a 1 --proxy tcp://127.0.0.1:7700`)."""


@contextmanager
def kv_client(settings: ClientSettings) -> Iterator[Client]:
    """A client to the settings' proxy. A ZvsrError in the block becomes a one-line error ("code: message"), and
    one that means the proxy or the cluster did not answer also says what was tried and how to point elsewhere."""
    import zmq

    from zvsr.client import Client, Timeout, Unavailable, ZvsrError, curve_for_proxy

    curve = curve_for_proxy(settings.config)
    try:
        with Client(settings.config.proxy, timeout_ms=settings.timeout_ms, curve=curve) as client:
            yield client
    except (Timeout, Unavailable) as error:
        raise settings.unreachable(f"{error.code}: {error}", proxy=True) from error
    except ZvsrError as error:
        raise click.ClickException(f"{error.code}: {error}") from error
    except zmq.ZMQError as error:  # an endpoint ZeroMQ cannot connect to, e.g. tcp://no-port
        raise click.ClickException(f"cannot connect to the proxy {settings.config.proxy}: {error}") from error


def run_kv(settings: ClientSettings, operation: dict[str, Any]) -> None:
    with kv_client(settings) as client:
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
@kv_command
def kv_get(key: str, settings: ClientSettings) -> None:
    """Print KEY's value (null if missing)."""
    run_kv(settings, {"op": "get", "key": key})


lease_id_option = click.option(
    "--lease", "lease_id", type=int, default=None, metavar="ID", help="Attach to this lease (`kv lease grant`)."
)


@kv_group.command("put")
@click.argument("key")
@click.argument("value")
@lease_id_option
@kv_command
def kv_put(key: str, value: str, lease_id: int | None, settings: ClientSettings) -> None:
    """Set KEY to VALUE; with --lease, KEY is deleted when the lease ends."""
    operation = {"op": "put", "key": key, "value": parse_value(value)}
    if lease_id is not None:
        operation["lease"] = lease_id
    run_kv(settings, operation)


@kv_group.command("del")
@click.argument("key")
@kv_command
def kv_delete(key: str, settings: ClientSettings) -> None:
    """Delete KEY; prints whether it existed."""
    run_kv(settings, {"op": "delete", "key": key})


@kv_group.command("cas")
@click.argument("key")
@click.argument("expected")
@click.argument("new")
@kv_command
def kv_cas(key: str, expected: str, new: str, settings: ClientSettings) -> None:
    """Set KEY to NEW if it equals EXPECTED (`null`: if missing)."""
    run_kv(settings, {"op": "cas", "key": key, "expected": parse_value(expected), "new": parse_value(new)})


@kv_group.command("incr")
@click.argument("key")
@click.option("--by", type=int, default=1, show_default=True)
@kv_command
def kv_incr(key: str, by: int, settings: ClientSettings) -> None:
    """Add BY to the integer at KEY (missing counts as 0); prints the new value."""
    run_kv(settings, {"op": "incr", "key": key, "by": by})


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
@kv_command
def kv_lock(name: str, owner: str, ttl: float | None, lease_id: int | None, settings: ClientSettings) -> None:
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
        run_kv(settings, operation)
        return
    with kv_client(settings) as client:
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
@kv_command
def kv_unlock(name: str, owner: str, settings: ClientSettings) -> None:
    """Release lock NAME held by OWNER."""
    run_kv(settings, {"op": "unlock", "name": name, "owner": owner})


@kv_group.group("lease")
@client_options(*KV_OPTIONS, timeout_ms=str(CLIENT_TIMEOUT_MS))
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
@kv_command
def kv_lease_grant(ttl: float, lock_delay: float, settings: ClientSettings) -> None:
    """Grant a lease; prints its id and ttl_ms."""
    operation: dict[str, Any] = {"op": "lease_grant", "ttl_ms": seconds_to_ms(ttl)}
    if lock_delay > 0:
        operation["lock_delay_ms"] = seconds_to_ms(lock_delay)
    run_kv(settings, operation)


@kv_lease_group.command("keepalive")
@click.argument("lease_id", metavar="ID", type=int)
@kv_command
def kv_lease_keepalive(lease_id: int, settings: ClientSettings) -> None:
    """Renew lease ID for a full ttl; prints the milliseconds it has left."""
    run_kv(settings, {"op": "lease_keepalive", "lease": lease_id})


@kv_lease_group.command("revoke")
@click.argument("lease_id", metavar="ID", type=int)
@kv_command
def kv_lease_revoke(lease_id: int, settings: ClientSettings) -> None:
    """End lease ID now: deletes its keys and releases its locks; prints ok and the keys deleted."""
    run_kv(settings, {"op": "lease_revoke", "lease": lease_id})


@kv_lease_group.command("ttl")
@click.argument("lease_id", metavar="ID", type=int)
@kv_command
def kv_lease_ttl(lease_id: int, settings: ClientSettings) -> None:
    """Print lease ID's ttl_ms, remaining_ms, keys and locks."""
    run_kv(settings, {"op": "lease_ttl", "lease": lease_id})


@kv_lease_group.command("list")
@kv_command
def kv_lease_list(settings: ClientSettings) -> None:
    """Print the ids of every live lease."""
    run_kv(settings, {"op": "lease_list"})


# --- zvsr backup, zvsr restore -------------------------------------------------------------------------------


@main.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
@click.option(
    "--replica", type=click.IntRange(min=0), default=None, help="Back up this replica (default: the primary)."
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Have the replica encode its state now (at its commit_number) instead of sending its latest snapshot.",
)
@client_command("config", "timeout_ms", "json", timeout_ms=BACKUP_TIMEOUT_MS)
def backup_command(out: str, replica: int | None, fresh: bool, settings: ClientSettings) -> None:
    """Save a verified copy of the primary's latest snapshot (state and client table after op N) to OUT.

    Ops after N are not in it. Restore it into a new cluster with `zvsr restore` (docs/operations.md).
    --timeout-ms bounds the wait for each answer of a replica. --json prints what was saved as one document.
    """
    from zvsr.runtime.backup import BackupError, BackupUnreachable, take_backup

    try:
        report = take_backup(
            settings.config, Path(out), replica=replica, fresh=fresh, timeout_ms=settings.timeout_ms
        )
    except BackupUnreachable as error:
        raise settings.unreachable(str(error), replicas=True) from error
    except BackupError as error:
        raise click.ClickException(str(error)) from error
    if settings.as_json:
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
