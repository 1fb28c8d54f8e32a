"""Cluster configuration: layering (flags > environment > file > defaults) and clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from zvsr.runtime.cluster_config import ConfigError, endpoint_host, load_config, local_cluster, to_toml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def test_a_written_configuration_reads_back_to_the_same_value(tmp_path: Path) -> None:
    config = local_cluster(
        replicas=5, base_port=9000, data_dir=str(tmp_path / "data"), timeouts={"heartbeat_ticks": 3}
    )
    assert load_config(write(tmp_path, to_toml(config))) == config


def test_the_local_default_puts_the_proxy_on_the_base_port_and_replicas_above_it() -> None:
    config = local_cluster()
    assert config.proxy == "tcp://127.0.0.1:7700"
    assert [r.client for r in config.replicas] == [f"tcp://127.0.0.1:{p}" for p in (7712, 7722, 7732)]
    assert config.protocol_config().replica_count == 3


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    path = write(tmp_path, to_toml(local_cluster(log_level="warning", tick_ms=20)))
    assert load_config(path).tick_ms == 20
    environment = {"ZVSR_TICK_MS": "7", "ZVSR_LOG_LEVEL": "error"}
    assert load_config(path, environment=environment).tick_ms == 7
    layered = load_config(path, environment=environment, flags={"log_level": "debug", "tick_ms": None})
    assert (layered.tick_ms, layered.log_level) == (7, "debug")


def test_relative_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    text = to_toml(local_cluster()).replace("[node]\n", '[node]\ndata_dir = "data"\n')
    config = load_config(write(tmp_path, text))
    assert config.replica_data_dir(2) == tmp_path / "data" / "replica-2"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("tick_ms = 10", 'tick_ms = "fast"'), "tick_ms must be an integer"),
        (("[proxy]", "[proxies]"), "unknown sections: proxies"),
        (('log_level = "info"', 'log_level = "loud"'), "log_level must be one of"),
        (("[proxy]", "[timeouts]\nprimary_timeout = 3\n[proxy]"), "unknown keys in [timeouts]"),
        (('client = "tcp://127.0.0.1:7712"', 'client = "tcp://127.0.0.1:7722"'), "endpoints used twice"),
        (("[cluster]", "[cluster\n"), "not valid TOML"),
    ],
)
def test_bad_files_fail_with_a_message_naming_the_setting(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = to_toml(local_cluster()).replace(*change, 1)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(write(tmp_path, text))


def test_bad_environment_and_missing_file_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ZVSR_TICK_MS must be an integer"):
        load_config(None, environment={"ZVSR_TICK_MS": "soon"})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_timeouts_are_checked_against_the_protocol_rules() -> None:
    with pytest.raises(ConfigError, match="heartbeat_ticks must be shorter"):
        local_cluster(timeouts={"heartbeat_ticks": 50, "primary_timeout_ticks": 20})


# --- [metrics] ----------------------------------------------------------------------------------------------


def test_metrics_are_off_unless_configured() -> None:
    config = local_cluster()
    assert config.replica_metrics(0) is None and config.proxy_metrics() is None
    assert "[metrics]" not in to_toml(config)


def test_the_local_cluster_with_metrics_puts_each_port_at_plus_4_and_reads_back(tmp_path: Path) -> None:
    config = local_cluster(replicas=3, base_port=9000, metrics=True)
    assert [config.replica_metrics(i) for i in range(3)] == [("127.0.0.1", p) for p in (9014, 9024, 9034)]
    assert config.proxy_metrics() == ("127.0.0.1", 9004)
    text = to_toml(config)
    assert "[metrics]\nreplica_ports = [9014, 9024, 9034]\nproxy_port = 9004\n" in text
    assert load_config(write(tmp_path, text)) == config


def test_metrics_port_layers_flag_over_environment_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, to_toml(local_cluster(metrics=True)))
    assert load_config(path).replica_metrics(1) == ("127.0.0.1", 7724)
    from_environment = load_config(path, environment={"ZVSR_METRICS_PORT": "9100"})
    assert from_environment.replica_metrics(1) == ("127.0.0.1", 9100)
    assert from_environment.proxy_metrics() == ("127.0.0.1", 9100)  # the one process it is given to
    from_flag = load_config(path, environment={"ZVSR_METRICS_PORT": "9100"}, flags={"metrics_port": 9200})
    assert from_flag.replica_metrics(1) == ("127.0.0.1", 9200)
    # Without a [metrics] section, the flag (or variable) alone turns one process's metrics on.
    plain = load_config(write(tmp_path, to_toml(local_cluster())), flags={"metrics_port": 0})
    assert plain.replica_metrics(2) == ("127.0.0.1", 0) and plain.proxy_metrics() == ("127.0.0.1", 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("proxy_port = 7704", 'proxy_port = "7704"'), "proxy_port must be a port number"),
        (("replica_ports = [7714, 7724, 7734]", "replica_ports = [7714, 7724]"), "one port per replica"),
        (("replica_ports = [7714, 7724, 7734]", 'replica_ports = ["a", 1, 2]'), "list of port numbers"),
        (("proxy_port = 7704", "proxy_port = 70000"), "proxy_port must be a port number 0..65535"),
        (("proxy_port = 7704", "proxy_port = 7714"), "ports used twice on one host: 127.0.0.1:7714"),
        (("proxy_port = 7704", "proxy_port = 7712"), "ports used twice on one host: 127.0.0.1:7712"),
        (("proxy_port = 7704", "proxy_port = 7704\nhost = 1"), "unknown keys in [metrics]: host"),
    ],
)
def test_bad_metrics_settings_fail_with_a_message_naming_them(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = to_toml(local_cluster(metrics=True)).replace(*change, 1)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(write(tmp_path, text))
    with pytest.raises(ConfigError, match="ZVSR_METRICS_PORT must be an integer"):
        load_config(None, environment={"ZVSR_METRICS_PORT": "on"})


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("tcp://127.0.0.1:7712", "127.0.0.1"),
        ("tcp://*:7712", "0.0.0.0"),
        ("tcp://[::1]:7712", "::1"),
        ("tcp://replica-2.example:7712", "replica-2.example"),
        ("ipc:///tmp/zvsr-client", "127.0.0.1"),
    ],
)
def test_metrics_bind_on_the_host_of_the_processs_own_endpoint(endpoint: str, host: str) -> None:
    assert endpoint_host(endpoint) == host


# --- replica ids and the first configuration (reconfiguration, docs/operations.md) -----------------------------


def test_a_file_without_ids_numbers_its_replicas_by_position(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, to_toml(local_cluster(replicas=3, base_port=9000))))
    assert config.ids == (0, 1, 2) and config.initial_count == 3 and config.replica_ids == ()
    assert config.address_of(1) == config.replicas[1] and config.address_of(3) is None
    assert config.protocol_config().reconfiguration, "the node acts on epochs: reconfiguration is on"


def test_a_file_after_a_reconfiguration_names_ids_and_keeps_the_first_configuration(tmp_path: Path) -> None:
    """Replicas 0, 2 and 5 after changes to a cluster that started with 3: the file says so, reads back to the
    same value, and the core's first configuration is still 0..2."""
    base = local_cluster(replicas=3, base_port=9000)
    extra = local_cluster(replicas=6, base_port=9000).replicas[5]
    config = base.with_replica(5, extra)
    config = dataclasses.replace(
        config, replicas=(config.replicas[0], config.replicas[2], extra), replica_ids=(0, 2, 5)
    )
    text = to_toml(config)
    assert "initial_replicas = 3" in text and "id = 5" in text
    again = load_config(write(tmp_path, text))
    assert again == config and again.ids == (0, 2, 5) and again.address_of(5) == extra
    assert again.protocol_config().replica_count == 3


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[[replica]]\nid = 4\npeer = "tcp://a:1"\nheartbeat = "tcp://a:2"\nclient = "tcp://a:3"\n',
            "initial_replicas is needed",
        ),
        (
            '[[replica]]\nid = -1\npeer = "tcp://a:1"\nheartbeat = "tcp://a:2"\nclient = "tcp://a:3"\n',
            "id must be a replica id",
        ),
        (
            '[cluster]\ninitial_replicas = 2\n[[replica]]\nid = 1\npeer = "tcp://a:1"\nheartbeat = "tcp://a:2"\n'
            'client = "tcp://a:3"\n[[replica]]\nid = 1\npeer = "tcp://b:1"\nheartbeat = "tcp://b:2"\n'
            'client = "tcp://b:3"\n',
            "listed twice",
        ),
        (
            '[cluster]\ninitial_replicas = 0\n[[replica]]\npeer = "tcp://a:1"\nheartbeat = "tcp://a:2"\n'
            'client = "tcp://a:3"\n',
            "initial_replicas must be 1..15",
        ),
    ],
)
def test_bad_replica_ids_fail_with_a_message_naming_them(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, table))


def test_reconfiguration_stays_off_with_curve_keys() -> None:
    """The replicas' keys are loaded by position at start: a new member's would be unknown to the others."""
    config = dataclasses.replace(local_cluster(replicas=3, base_port=9000), keys_dir="keys")
    assert not config.protocol_config().reconfiguration


def test_read_mode_is_a_cluster_setting_layered_like_the_others(tmp_path: Path) -> None:
    """read_mode defaults to read_index, reads from [cluster] and ZVSR_READ_MODE, reaches every replica's core,
    and an unknown mode fails at start naming the setting."""
    assert local_cluster().protocol_config().read_mode == "read_index"
    path = write(tmp_path, to_toml(local_cluster(read_mode="lease")))
    assert load_config(path).protocol_config().read_mode == "lease"
    assert load_config(path, environment={"ZVSR_READ_MODE": "log"}).read_mode == "log"
    with pytest.raises(ConfigError, match="read_mode must be one of"):
        text = to_toml(local_cluster()).replace('read_mode = "read_index"', 'read_mode = "x"')
        load_config(write(tmp_path, text))
