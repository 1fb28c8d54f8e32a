"""The bench's load generator with a get share (`zvsr.bench.loadgen --get-share`): the read mix of `zvsr bench`.

Against a real 3-replica cluster in read_mode read_index (processes on 127.0.0.1): a 90% get load completes, about
90% of its completions are gets, and the gets are served without log entries (the primary's op_number grows by
far fewer than the completions); a load without a share is puts only, each one logged. Nothing is checked
against a timing threshold.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zvsr.bench import loadgen
from zvsr.bench.procs import Children
from zvsr.bench.runner import Load, _child_environment, run_load
from zvsr.runtime.processes import ProcessCluster, process_cluster

SESSIONS = 8
WINDOW_S = 1.5
ENOUGH = 200  # completions below this say nothing about a share


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcessCluster, Children]]:
    root = tmp_path_factory.mktemp("loadgen")
    _child_environment()  # the load generators import this zvsr
    (root / "cluster").mkdir()
    with process_cluster(root / "cluster", read_mode="read_index", fsync="never") as started:
        started.wait_for_primary(timeout_s=30)
        with Children(root) as children:
            yield started, children


def _op_number(cluster: ProcessCluster) -> int:
    primary = cluster.wait_for_primary(timeout_s=30)
    status = cluster.status(primary, timeout_ms=2000)
    assert status is not None, "the primary did not answer the status query"
    number: int = status["op_number"]
    return number


def _load(cluster: ProcessCluster, children: Children, get_share: float) -> tuple[Load, int]:
    """One load generator, `SESSIONS` sessions, for `WINDOW_S`; the load and the log entries it added."""
    before = _op_number(cluster)
    load = run_load(
        children,
        cluster.config.proxy,
        mode="zvsr",
        clients=1,
        sessions=SESSIONS,
        warmup_s=0.2,
        duration_s=WINDOW_S,
        latencies=False,
        get_share=get_share,
    )
    return load, _op_number(cluster) - before


@pytest.mark.timeout(120)
def test_a_90_percent_get_load_completes_mostly_gets_and_they_add_no_log_entries(
    cluster: tuple[ProcessCluster, Children],
) -> None:
    """8 sessions, --get-share 0.9, read_index cluster: about 90% of the completions are gets, and the primary's
    log grows by the registrations and the puts only (a get through the log would add one entry per get)."""
    load, logged = _load(*cluster, get_share=0.9)
    assert load.completed >= ENOUGH, load
    assert 0.8 <= load.completed_gets / load.completed <= 0.97, load
    assert not load.errors, load.errors
    # Logged: SESSIONS registrations plus every put (about a tenth of all completions, warm-up included).
    assert SESSIONS <= logged < load.completed // 2, (logged, load)


@pytest.mark.timeout(120)
def test_without_a_get_share_every_completion_is_a_logged_put(cluster: tuple[ProcessCluster, Children]) -> None:
    """--get-share 0 (the default): no gets, and every completion in the window was an entry of the log."""
    load, logged = _load(*cluster, get_share=0.0)
    assert load.completed >= ENOUGH, load
    assert load.completed_gets == 0
    assert logged >= load.completed + SESSIONS, (logged, load)


@pytest.mark.parametrize("share", ["-0.1", "1.01", "nan", "half"])
def test_a_get_share_outside_0_to_1_is_refused_with_a_clear_message(
    share: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        loadgen.main(["--endpoint", "tcp://127.0.0.1:1", "--get-share", share])
    assert exited.value.code == 2
    assert f"argument --get-share: must be a number from 0 to 1, got '{share}'" in capsys.readouterr().err


def test_a_session_s_get_reads_the_key_its_put_writes() -> None:
    """Session 5's get names the key of session 5's put (its first request), so the get finds a value."""
    import msgpack  # type: ignore[import-untyped]

    put = msgpack.unpackb(loadgen.operation(5))
    get = msgpack.unpackb(loadgen.get_operation(5))
    assert put["op"] == "put" and get == {"op": "get", "key": put["key"]}
