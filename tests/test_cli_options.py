"""The client-side commands' shared options (--config, --proxy, --timeout-ms, --json) before or after the command's
name, the cluster file they find, and the one-line error when nothing answers (`zvsr.cli_options`).

The clusters here are never started: which endpoints a command used shows in its error, which names them and
where they came from. Every case runs the real command tree in this process (click's test runner).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner, Result

from zvsr.cli import main
from zvsr.cli_options import ClientSettings, locate_cluster_file
from zvsr.runtime import launcher
from zvsr.runtime.cluster_config import DISCOVERY_FILE, ClusterConfig, load_config, to_toml
from zvsr.runtime.processes import free_ports, loopback_config

pytestmark = pytest.mark.timeout(60)

# Whatever the shell running the tests has set must not leak in.
CLEAN = {"ZVSR_CONFIG": None, "ZVSR_PROXY": None}


def zvsr(*arguments: str, **environment: str | None) -> Result:
    return CliRunner().invoke(main, list(arguments), env={**CLEAN, **environment})


def failed_one_line(result: Result, code: int = 1) -> str:
    """The error of a command that failed cleanly: exit `code`, no traceback, one line on stderr."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception  # a ClickException, not a crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or code == 2, result.stderr  # a usage error prints the usage too
    return lines[-1]


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, tuple[Path, ClusterConfig]]]:
    """Three cluster files of clusters that never run, on ports nobody listens on; the cwd is empty."""
    monkeypatch.chdir(tmp_path)
    made = {}
    for name in ("one", "two", "three"):
        config = loopback_config(3)
        path = tmp_path / f"{name}.toml"
        path.write_text(to_toml(config))
        made[name] = (path, config)
    yield made


def replicas_of(config: ClusterConfig) -> str:
    return ", ".join(address.client for address in config.replicas)


# --- where the options go ---------------------------------------------------------------------------------------

PROXIES = [f"tcp://127.0.0.1:{port}" for port in free_ports(3)]
P0, P1, P2 = PROXIES


@pytest.mark.parametrize(
    ("arguments", "used"),
    [
        (["kv", "put", "a", "1", "--proxy", P0], P0),  # the README's spelling, refused before
        (["kv", "--proxy", P0, "put", "a", "1"], P0),
        (["--proxy", P0, "kv", "put", "a", "1"], P0),
        (["--proxy", P0, "kv", "--proxy", P1, "put", "a", "1"], P1),
        (["--proxy", P0, "kv", "--proxy", P1, "put", "a", "1", "--proxy", P2], P2),
        (["kv", "lease", "--proxy", P0, "list"], P0),
        (["kv", "--proxy", P1, "lease", "list", "--proxy", P0], P0),
        (["kv", "get", "a", "--json", "--proxy", P0], P0),  # kv prints JSON anyway; --json is accepted
    ],
)
def test_kv_takes_the_proxy_before_or_after_the_command_name_and_the_innermost_wins(
    arguments: list[str], used: str
) -> None:
    line = failed_one_line(zvsr(*arguments, "--timeout-ms", "100"))
    assert f"Tried proxy {used} (from --proxy)" in line, line
    assert [proxy for proxy in PROXIES if proxy in line] == [used]


def test_the_innermost_timeout_wins() -> None:
    """5 s at the top, 4 s on the group, 100 ms on the command: the call gives up after 100 ms."""
    result = zvsr(
        "--timeout-ms", "5000", "kv", "--timeout-ms", "4000", "get", "a", "--timeout-ms", "100", "--proxy", P0
    )
    assert "within 100 ms" in failed_one_line(result)


def test_status_and_backup_take_config_timeout_and_json_before_or_after_their_name(
    files: dict[str, tuple[Path, ClusterConfig]], tmp_path: Path
) -> None:
    (one, config), (two, _) = files["one"], files["two"]
    for arguments in (
        ["--config", str(one), "status", "--timeout-ms", "50"],
        ["status", "--config", str(one), "--timeout-ms", "50"],
        ["--config", str(two), "--timeout-ms", "5000", "status", "--config", str(one), "--timeout-ms", "50"],
        ["backup", str(tmp_path / "out"), "--config", str(one), "--timeout-ms", "50"],
        ["--config", str(one), "--timeout-ms", "50", "backup", str(tmp_path / "out")],
    ):
        line = failed_one_line(zvsr(*arguments))
        assert "within 50 ms" in line and f"Tried replicas {replicas_of(config)} (from --config {one})" in line
    assert not (tmp_path / "out").exists()
    for arguments in (["--json", "status"], ["status", "--json"]):
        result = zvsr(*arguments, "--config", str(one), "--timeout-ms", "50")
        failed_one_line(result)
        report = json.loads(result.stdout)
        assert [entry["endpoint"] for entry in report["replicas"]] == [a.client for a in config.replicas]
        assert not any(entry["reachable"] for entry in report["replicas"])


def test_an_option_typed_after_zvsr_for_a_command_that_does_not_take_it_is_a_usage_error(
    files: dict[str, tuple[Path, ClusterConfig]],
) -> None:
    """Not silently ignored: status asks the replicas (no --proxy); bench and node have options of their own."""
    assert "`zvsr status` does not take --proxy" in failed_one_line(zvsr("--proxy", P0, "status"), code=2)
    assert "`zvsr bench` takes --json after its name" in failed_one_line(zvsr("--json", "bench"), code=2)
    one = str(files["one"][0])
    refused = zvsr("--config", one, "node", "--replica", "0")
    assert "`zvsr node` takes --config after its name" in failed_one_line(refused, code=2)


# --- which cluster file -----------------------------------------------------------------------------------------


def test_the_cluster_file_is_the_flag_then_zvsr_config_then_a_running_cluster_up_s_then_the_defaults(
    tmp_path: Path,
) -> None:
    path, source = locate_cluster_file(None, {}, tmp_path)
    assert path is None and "embedded defaults" in source
    (tmp_path / DISCOVERY_FILE).parent.mkdir()
    (tmp_path / DISCOVERY_FILE).write_text("")
    path, source = locate_cluster_file(None, {}, tmp_path)
    assert path == tmp_path / DISCOVERY_FILE and "./.zvsr/cluster.toml" in source and "still running" in source
    assert locate_cluster_file(None, {}, tmp_path / "elsewhere")[0] is None, "only the current directory"
    assert locate_cluster_file(None, {"ZVSR_CONFIG": "e.toml"}, tmp_path) == (Path("e.toml"), "ZVSR_CONFIG=e.toml")
    flag = locate_cluster_file("f.toml", {"ZVSR_CONFIG": "e.toml"}, tmp_path)
    assert flag == (Path("f.toml"), "--config f.toml")


def test_commands_find_the_cluster_file_of_a_cluster_up_in_the_current_directory(
    files: dict[str, tuple[Path, ClusterConfig]], tmp_path: Path
) -> None:
    """No flags: ./.zvsr/cluster.toml; ZVSR_CONFIG beats it; --config beats both. The proxy: --proxy, then
    ZVSR_PROXY, then the file's."""
    (one, config_one), (two, config_two), (three, config_three) = files["one"], files["two"], files["three"]
    (tmp_path / DISCOVERY_FILE).parent.mkdir()
    (tmp_path / DISCOVERY_FILE).write_text(three.read_text())
    found = failed_one_line(zvsr("status", "--timeout-ms", "50"))
    assert f"Tried replicas {replicas_of(config_three)} (from ./.zvsr/cluster.toml" in found
    by_environment = failed_one_line(zvsr("status", "--timeout-ms", "50", ZVSR_CONFIG=str(two)))
    assert f"Tried replicas {replicas_of(config_two)} (from ZVSR_CONFIG={two})" in by_environment
    by_flag = failed_one_line(zvsr("status", "--config", str(one), "--timeout-ms", "50", ZVSR_CONFIG=str(two)))
    assert f"Tried replicas {replicas_of(config_one)} (from --config {one})" in by_flag

    kv = ["kv", "get", "a", "--timeout-ms", "100"]
    assert f"Tried proxy {config_three.proxy} (from ./.zvsr/cluster.toml" in failed_one_line(zvsr(*kv))
    assert f"Tried proxy {P0} (from ZVSR_PROXY)" in failed_one_line(zvsr(*kv, ZVSR_PROXY=P0))
    assert f"Tried proxy {P1} (from --proxy)" in failed_one_line(zvsr(*kv, "--proxy", P1, ZVSR_PROXY=P0))


# --- errors: one line, what was tried, how to point elsewhere ----------------------------------------------------


def test_a_proxy_that_never_answers_is_a_one_line_timeout_naming_it_and_how_to_point_elsewhere() -> None:
    """The issue's symptom: something listens on the proxy's port but never answers (a stale cluster, the wrong
    service). The call gives up after its timeout and says where it waited and what to change."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    silent = context.socket(zmq.ROUTER)
    try:
        silent.bind(P2)
        line = failed_one_line(zvsr("kv", "put", "a", "1", "--proxy", P2, "--timeout-ms", "300"))
    finally:
        silent.close(linger=0)
        context.term()
    assert line.startswith("Error: timeout: no answer within 300 ms"), line
    assert f"Tried proxy {P2} (from --proxy)" in line
    assert "--proxy ENDPOINT, --config FILE or ZVSR_CONFIG=FILE" in line


def test_a_cluster_that_is_not_running_is_a_one_line_error_for_kv_status_and_backup(
    files: dict[str, tuple[Path, ClusterConfig]], tmp_path: Path
) -> None:
    one, config = files["one"]
    where = f"(from --config {one}). Point at another cluster with"
    kv = failed_one_line(zvsr("kv", "get", "a", "--config", str(one), "--timeout-ms", "100"))
    assert kv.startswith("Error: unavailable: no proxy reachable within 100 ms")
    assert config.proxy in kv and where in kv
    status = failed_one_line(zvsr("status", "--config", str(one), "--timeout-ms", "50"))
    assert status.startswith("Error: no replica answered within 50 ms") and replicas_of(config) in status
    assert where in status and "--config FILE or ZVSR_CONFIG=FILE" in status
    backup = failed_one_line(zvsr("backup", str(tmp_path / "b"), "--config", str(one), "--timeout-ms", "50"))
    assert backup.startswith("Error: no primary in normal status answered within 50 ms")
    assert replicas_of(config) in backup and where in backup


def test_bad_configuration_is_a_one_line_error_never_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "gone.toml"
    line = failed_one_line(zvsr("status", ZVSR_CONFIG=str(missing)))
    assert "cannot read" in line and f"ZVSR_CONFIG={missing}" in line
    broken = tmp_path / "broken.toml"
    broken.write_text("[[replica]\n")
    assert "is not valid TOML" in failed_one_line(zvsr("kv", "get", "a", "--config", str(broken)))
    usage = failed_one_line(zvsr("kv", "get", "a", "--proxy", "nonsense"), code=2)
    assert "Invalid value for '--proxy'" in usage and "tcp://host:port" in usage


def test_cluster_up_s_copy_reads_back_as_its_config_and_it_removes_only_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy in ./.zvsr/cluster.toml loads as the cluster's configuration. At the end the launcher removes it
    (and the empty .zvsr), unless another `zvsr cluster up` in the same directory has replaced it since."""
    monkeypatch.chdir(tmp_path)
    config = loopback_config(3)
    echoed: list[str] = []
    published = launcher._publish(config, tmp_path / "cluster.toml", echoed.append)
    assert published is not None and not echoed
    assert load_config(tmp_path / DISCOVERY_FILE) == config
    launcher._withdraw(*published)
    assert not (tmp_path / ".zvsr").exists()

    first = launcher._publish(config, tmp_path / "cluster.toml", echoed.append)
    assert first is not None
    (tmp_path / DISCOVERY_FILE).write_text("# another launcher's\n")
    launcher._withdraw(*first)
    assert (tmp_path / DISCOVERY_FILE).read_text() == "# another launcher's\n"


def test_the_unreachable_error_names_the_watch_endpoints_for_a_watcher() -> None:
    """What `zvsr watch` says when no replica's watch stream answers: each replica's watch endpoint, its source."""
    config = loopback_config(3)
    settings = ClientSettings(
        config=config, config_source="--config c.toml", proxy_source="--proxy", timeout_ms=100, as_json=False
    )
    message = settings.unreachable("no watch stream answered within 100 ms", watch=True).format_message()
    watches = ", ".join(str(address.watch) for address in config.replicas)
    assert message == (
        f"no watch stream answered within 100 ms. Tried watch endpoints {watches} (from --config c.toml). "
        "Point at another cluster with --config FILE or ZVSR_CONFIG=FILE (`zvsr cluster up` prints its file)."
    )
