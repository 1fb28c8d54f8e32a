"""The options every client-side command shares, wherever they are typed, and how such a command finds its cluster.

Theory of operation
-------------------
Client-side commands talk to a running cluster: `zvsr kv …` (and `zvsr kv lease …`), `zvsr status`,
`zvsr member …`, `zvsr backup`, `zvsr watch`. They share four options:

    --config FILE       the cluster file
    --proxy ENDPOINT    the proxy to send requests to (`kv`, `member`: the others ask the replicas)
    --timeout-ms MS     how long to wait for an answer (each command has its own default)
    --json              machine-readable output (`kv` always prints JSON; it accepts the flag all the same)

Each may be typed at any level of the command line that leads to a command using it: after `zvsr`
(`zvsr --config F status`), after a group (`zvsr kv --proxy EP put a 1`, `zvsr kv lease --json list`) and after
the command itself (`zvsr kv put a 1 --proxy EP`). When one is given at several levels, the innermost (the one
typed later) wins. Options are recorded as each level is parsed (`_record`, into the context tree's shared
``meta``) and resolved once, when the command runs (`ClientSettings`). An option typed after `zvsr` for a
command that does not take it (`zvsr --proxy EP status`, `zvsr --json bench`) is a usage error, not ignored.

Which cluster file, highest first:
1. ``--config FILE``;
2. ``ZVSR_CONFIG=FILE``;
3. ``./.zvsr/cluster.toml`` in the current directory — a running `zvsr cluster up` writes it there and removes
   it when it stops, so a shell in the same directory needs nothing (only the current directory is searched:
   a file found in some parent would be a surprise);
4. none: the embedded defaults, `zvsr cluster up`'s local cluster on its default base port.
Each setting then layers as everywhere: flags > ``ZVSR_*`` environment > the file > defaults
(`zvsr.runtime.cluster_config`).

A cluster that does not answer is a one-line error (`ClientSettings.unreachable`) naming the endpoints tried,
where they came from and how to point elsewhere; bad configuration is a one-line error too; exit status 1,
never a traceback.

A new client-side command adopts all of this with one decorator, which adds the options and hands the command
its resolved settings:

    @main.command("watch")
    @click.argument("prefix")
    @client_command("config", "timeout_ms", "json", timeout_ms=WATCH_TIMEOUT_MS)
    def watch_command(prefix: str, settings: ClientSettings) -> None:
        ...  # settings.config, settings.timeout_ms, settings.as_json, settings.unreachable(...)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from zvsr.connect import check_endpoints
from zvsr.runtime.cluster_config import (
    DEFAULT_BASE_PORT,
    DISCOVERY_FILE,
    ClusterConfig,
    ConfigError,
    load_config,
)

_META = "zvsr.client_options"  # key in click's Context.meta, shared by every context of one command line


class ClientOption(click.Option):
    """One of the shared options: recorded as it is parsed, at whatever level, never passed to a callback."""


def _record(context: click.Context, parameter: click.Parameter, value: Any) -> Any:
    # Contexts are parsed outermost first, so a later (inner) level overwrites an earlier one. Not given
    # (None, or a flag left False) records nothing: an inner level's default must not undo an outer flag.
    if parameter.name == "proxy" and value is not None:
        try:
            check_endpoints([value])
        except ValueError as error:
            raise click.BadParameter(str(error), context, parameter) from error
    if value is not None and value is not False and parameter.name is not None:
        context.meta.setdefault(_META, {})[parameter.name] = value
    return value


def _option(*declarations: str, **attributes: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(*declarations, cls=ClientOption, expose_value=False, callback=_record, **attributes)


_OPTIONS: Mapping[str, Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]]] = {
    "config": lambda default: _option(
        "--config",
        "config",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"Cluster file (TOML). Default: $ZVSR_CONFIG, else ./{DISCOVERY_FILE} (written by a `zvsr cluster "
        f"up` running in this directory), else the local cluster of `zvsr cluster up --base-port "
        f"{DEFAULT_BASE_PORT}`.",
    ),
    "proxy": lambda default: _option(
        "--proxy",
        "proxy",
        default=None,
        metavar="ENDPOINT",
        help="Proxy endpoint, e.g. tcp://127.0.0.1:7700. Default: $ZVSR_PROXY, else the cluster file's.",
    ),
    "timeout_ms": lambda default: _option(
        "--timeout-ms",
        "timeout_ms",
        type=click.IntRange(min=1),
        default=None,
        help=f"Wait this long for an answer. Default: {default}.",
    ),
    "json": lambda default: _option(
        "--json", "json", is_flag=True, default=False, help="Output JSON (kv answers are JSON either way)."
    ),
}
NAMES = tuple(_OPTIONS)


def client_options(
    *names: str, timeout_ms: str = "the command's"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the shared options `names` (of `NAMES`) to a command or group, to be recorded, not passed.
    `timeout_ms` is what the help says the default timeout is."""
    unknown = set(names) - set(NAMES)
    assert not unknown, f"unknown client options {unknown}"

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            function = _OPTIONS[name](timeout_ms)(function)
        return function

    return decorate


def client_command(*names: str, timeout_ms: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`client_options(*names)` for a command that runs: it is called with ``settings=ClientSettings(...)``,
    resolved from every level of the command line (`timeout_ms`: the command's default), and bad configuration
    becomes a one-line error."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            settings = ClientSettings.resolve(click.get_current_context(), timeout_ms=timeout_ms)
            try:
                return function(*args, settings=settings, **kwargs)
            except ConfigError as error:  # e.g. unreadable keys, found only when the command connects
                raise click.ClickException(str(error)) from error

        return client_options(*names, timeout_ms=str(timeout_ms))(run)

    return decorate


def check_outer_options(context: click.Context) -> None:
    """Refuse shared options typed after `zvsr` (`context`: the root's) for a command that does not take them."""
    given = sorted(context.meta.get(_META, {}))
    if not given or context.invoked_subcommand is None or not isinstance(context.command, click.Group):
        return
    name = context.invoked_subcommand
    command = context.command.get_command(context, name)
    params = list(getattr(command, "params", ()))
    shared = {p.name for p in params if isinstance(p, ClientOption)}
    own = {flag for p in params if not isinstance(p, ClientOption) for flag in p.opts}
    for option in (option for option in given if option not in shared):
        flag = "--" + option.replace("_", "-")
        if flag in own:  # e.g. `zvsr node --config F`: its own option, not a client-side command's
            raise click.UsageError(f"`zvsr {name}` takes {flag} after its name: `zvsr {name} {flag} …`", context)
        raise click.UsageError(f"`zvsr {name}` does not take {flag}: see `zvsr {name} --help`", context)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """What a client-side command runs with, and where each part came from (for its error messages)."""

    config: ClusterConfig
    config_source: str  # how the cluster file was chosen, for "Tried … (from …)"
    proxy_source: str
    timeout_ms: int
    as_json: bool

    @classmethod
    def resolve(
        cls,
        context: click.Context,
        *,
        timeout_ms: int,
        environment: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ClientSettings:
        """The settings of the command line parsed into `context`; ClickException if the configuration is bad."""
        given: dict[str, Any] = context.meta.get(_META, {})
        environment = os.environ if environment is None else environment
        path, config_source = locate_cluster_file(given.get("config"), environment, cwd or Path.cwd())
        proxy = given.get("proxy")
        try:
            config = load_config(path, environment=environment, flags={"proxy": proxy})
        except ConfigError as error:
            raise click.ClickException(f"{error} (cluster file: {config_source})") from error
        if proxy is not None:
            proxy_source = "--proxy"
        elif "ZVSR_PROXY" in environment:
            proxy_source = "ZVSR_PROXY"
        else:
            proxy_source = config_source
        return cls(
            config=config,
            config_source=config_source,
            proxy_source=proxy_source,
            timeout_ms=given.get("timeout_ms", timeout_ms),
            as_json=bool(given.get("json", False)),
        )

    def unreachable(
        self, problem: str, *, replicas: bool = False, watch: bool = False, proxy: bool = False
    ) -> click.ClickException:
        """A one-line error for a cluster that did not answer: `problem`, the endpoints tried (the proxy, the
        replicas' client endpoints, their watch endpoints) and where they came from, and how to point at
        another cluster."""
        tried = []
        if proxy:
            tried.append(f"proxy {self.config.proxy} (from {self.proxy_source})")
        for wanted, name, endpoints in (
            (replicas, "replicas", [address.client for address in self.config.replicas]),
            (watch, "watch endpoints", [address.watch or "none" for address in self.config.replicas]),
        ):
            if wanted:
                tried.append(f"{name} {', '.join(endpoints)} (from {self.config_source})")
        how = "--config FILE or ZVSR_CONFIG=FILE"
        return click.ClickException(
            f"{problem.rstrip('.')}. Tried {' and '.join(tried)}. Point at another cluster with "
            f"{'--proxy ENDPOINT, ' if proxy else ''}{how} (`zvsr cluster up` prints its file)."
        )


def locate_cluster_file(flag: str | None, environment: Mapping[str, str], cwd: Path) -> tuple[Path | None, str]:
    """(the cluster file to load, or None for the embedded defaults; how it was chosen), highest first:
    `flag`, ZVSR_CONFIG, the current directory's ./.zvsr/cluster.toml."""
    if flag is not None:
        return Path(flag), f"--config {flag}"
    if environment.get("ZVSR_CONFIG"):
        return Path(environment["ZVSR_CONFIG"]), f"ZVSR_CONFIG={environment['ZVSR_CONFIG']}"
    discovered = cwd / DISCOVERY_FILE
    if discovered.is_file():
        return discovered, (
            f"./{DISCOVERY_FILE}, which `zvsr cluster up` keeps in the directory it runs in until it stops: "
            "is it still running?"
        )
    return None, (
        f"the embedded defaults, `zvsr cluster up --base-port {DEFAULT_BASE_PORT}`: no --config, no ZVSR_CONFIG, "
        f"no ./{DISCOVERY_FILE} here"
    )
