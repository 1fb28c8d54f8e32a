"""Cluster configuration: layering (flags > environment > file > defaults) and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from zvsr.runtime.cluster_config import ConfigError, load_config, local_cluster, to_toml


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
