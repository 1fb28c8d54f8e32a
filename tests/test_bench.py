"""`zvsr bench --quick --json`: the CI smoke test of the benchmark command.

It checks that the output is well formed — every expected figure present, numbers finite and positive, ratios
and targets computed consistently from the figures, the results file equal to what was printed — and never
checks a timing against a threshold: CI machines are shared and noisy.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zvsr.bench.runner import Report
from zvsr.bench.stats import median, percentile
from zvsr.constants import READ_MODES

ROOT = Path(__file__).resolve().parent.parent

FIGURES = {
    "zvsr_strict_p50_ms": "ms",
    "zvsr_strict_p99_ms": "ms",
    "zvsr_client_strict_p50_ms": "ms",
    "zvsr_pipelined_ops_s": "ops/s",
    "zvsr_pipelined_p99_ms": "ms",
    "zvsr_steady_ops_s": "ops/s",
    "zvsr_steady_view_changes": "views",
    "zvsr_fsync_pipelined_ops_s": "ops/s",
    "zvsr_failover_s": "s",
    "raw_forwarder_strict_p50_ms": "ms",
    "raw_hop_p50_ms": "ms",
    "raw_forwarder_plus_hop_p50_ms": "ms",
    "raw_forwarder_pipelined_ops_s": "ops/s",
    "disk_fdatasync_ops_s": "ops/s",
    # batching clients (phase 1) and the curves (zvsr.bench.curves): each new piece ran
    "zvsr_batched_ops_s": "ops/s",
    "raw_forwarder_batched_ops_s": "ops/s",
    **{
        f"zvsr_clients_{n}_{kind}": unit
        for n in (1, 4, 16, 64)
        for kind, unit in (("ops_s", "ops/s"), ("p99_ms", "ms"))
    },
    **{
        f"zvsr_value_{v}_{kind}": unit
        for v in ("16b", "1kib", "16kib")
        for kind, unit in (("ops_s", "ops/s"), ("p99_ms", "ms"))
    },
    "zvsr_r5_strict_p50_ms": "ms",
    "zvsr_r5_pipelined_ops_s": "ops/s",
    # the read mix per read mode (zvsr.bench.read_mix)
    **{
        f"read_mix_{mode}_{kind}": unit
        for mode in READ_MODES
        for kind, unit in (("ops_s", "ops/s"), ("p99_ms", "ms"))
    },
}
RATIOS = {
    "pipelined_vs_raw_forwarder": (">=", 0.8),
    "strict_p50_vs_raw_path": ("<=", 1.2),
    "fsync_group_commit": (">=", 3.0),
    "read_mix_read_index_vs_log": (">=", 3.0),
}
UNTARGETED_RATIOS = (
    "batched_vs_raw_forwarder_batched",
    "batched_vs_unbatched",
    "five_replicas_pipelined",
    "five_replicas_strict_p50",
    "read_mix_lease_vs_log",
)
PYSYNCOBJ_RATIOS = {"pipelined_vs_pysyncobj_async": (">=", 2.5)}
TARGETS = {
    "strict_p99": "zvsr_strict_p99_ms",
    "failover": "zvsr_failover_s",
    "steady_view_changes": "zvsr_steady_view_changes",
}


def _met(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, ">=": value >= bound, "==": value == bound}[op]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _run_module(arguments: list[str], *, cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`python -m <arguments>` with this checkout first on the path, its output captured."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", *arguments]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    finished = _run_module(["zvsr", "bench", "--quick", "--json", "--out", str(out)], cwd=ROOT, timeout_s=110)
    assert finished.returncode == 0, finished.stderr[-6000:]
    return json.loads(finished.stdout), out, finished.stderr


@pytest.mark.timeout(120)
def test_quick_json_is_one_well_formed_object(quick_run: tuple[dict[str, Any], Path, str]) -> None:
    result, out, stderr = quick_run
    assert result["schema"] == "zvsr-bench/1"
    assert result["quick"] is True
    assert result["settings"]["runs"] == 1
    assert _number(result["duration_s"]) and result["duration_s"] > 0
    assert result["machine"]["cpus"] >= 1
    assert "done" in stderr  # the progress line went to stderr, not into the JSON
    assert result["results_file"] == str(out)
    assert json.loads(out.read_text()) == result


@pytest.mark.timeout(120)
def test_quick_figures_are_positive_finite_medians(quick_run: tuple[dict[str, Any], Path, str]) -> None:
    figures = quick_run[0]["figures"]
    for name, unit in FIGURES.items():
        assert name in figures, name
        assert figures[name]["unit"] == unit, name
    for name, figure in figures.items():
        assert figure["system"] in ("zvsr", "baseline"), name
        assert isinstance(figure["what"], str) and figure["what"], name
        assert _number(figure["value"]), name
        if name == "zvsr_steady_view_changes":
            assert figure["value"] >= 0 and figure["value"] == int(figure["value"])
        else:
            assert figure["value"] > 0, name
        assert figure["runs"] and all(_number(run) for run in figure["runs"]), name
        assert figure["value"] == pytest.approx(median(figure["runs"])), name
        if "sum_of" in figure:  # a derived figure: repetition i is the sum of the parts' repetitions i
            parts = [figures[part]["runs"] for part in figure["sum_of"]]
            assert figure["runs"] == pytest.approx([sum(values) for values in zip(*parts, strict=True)]), name
    assert len(figures["zvsr_failover_s"]["runs"]) == 1


@pytest.mark.timeout(120)
def test_quick_ratios_and_targets_follow_from_the_figures(quick_run: tuple[dict[str, Any], Path, str]) -> None:
    result = quick_run[0]
    figures = result["figures"]
    ratios = {ratio["name"]: ratio for ratio in result["ratios"]}
    expected = dict(RATIOS)
    if "pysyncobj_async_ops_s" in figures:
        expected |= PYSYNCOBJ_RATIOS
    else:
        assert "pysyncobj" in result["skipped"]  # --quick skips PySyncObj unless asked
    for name, (op, bound) in expected.items():
        assert name in ratios, name
        assert ratios[name]["target"] == {"op": op, "value": bound}
    for name in UNTARGETED_RATIOS:
        assert name in ratios and ratios[name]["target"] is None, name
    for name, ratio in ratios.items():
        numerator, denominator = figures[ratio["numerator"]]["value"], figures[ratio["denominator"]]["value"]
        assert ratio["value"] == pytest.approx(numerator / denominator), name
        if "paired_runs" in ratio:  # repetition i of the numerator over repetition i of the denominator
            tops, bottoms = figures[ratio["numerator"]]["runs"], figures[ratio["denominator"]]["runs"]
            assert ratio["paired_runs"] == pytest.approx([a / b for a, b in zip(tops, bottoms, strict=True)])
            assert ratio["paired_median"] == pytest.approx(median(ratio["paired_runs"]))
        if ratio["target"] is None:
            assert ratio["met"] is None
        else:
            assert ratio["met"] is _met(ratio["value"], ratio["target"]["op"], ratio["target"]["value"]), name
    targets = {target["name"]: target for target in result["targets"]}
    assert set(targets) == set(TARGETS)
    for name, figure in TARGETS.items():
        target = targets[name]
        assert target["figure"] == figure
        assert target["value"] == figures[figure]["value"]
        assert target["met"] is _met(target["value"], target["op"], target["bound"])
    steady = result["details"]["steady"]
    assert len(steady["views_before"]) == len(steady["views_after"]) == 3
    seen = steady["views_after"] + [view for sample in steady["samples"] for view in sample["views"]]
    highest_before = max(view for view in steady["views_before"] if view is not None)
    highest = max(view for view in seen if view is not None)
    assert figures["zvsr_steady_view_changes"]["value"] == highest - highest_before


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([3.0], 0.99) == 3
    assert math.isnan(percentile([], 0.5))


def test_report_medians_ratios_and_missing_figures() -> None:
    report = Report()
    for value in (3.0, 1.0, 2.0):
        report.add("a_ops_s", value, unit="ops/s", system="zvsr", what="a")
    report.add("b_ops_s", 4.0, unit="ops/s", system="baseline", what="b")
    report.ratio("a_vs_b", "a_ops_s", "b_ops_s", (">=", 0.8))
    report.ratio("a_vs_c", "a_ops_s", "c_ops_s", (">=", 1.0))
    report.target("a_small", "a_ops_s", "<=", 2.0)
    assert report.figures["a_ops_s"]["value"] == 2.0
    assert report.ratios == [
        {
            "name": "a_vs_b",
            "numerator": "a_ops_s",
            "denominator": "b_ops_s",
            "value": 0.5,
            "target": {"op": ">=", "value": 0.8},
            "met": False,
        }
    ]
    assert "ratio:a_vs_c" in report.skipped
    assert report.targets[0]["met"] is True


# The tools bench/README.md documents, with the flags it shows: each runs as written (`python -m zvsr.bench.NAME`)
# and accepts every documented flag. Running them for real takes minutes; --help proves the command line.
DOCUMENTED_TOOLS = {
    "async_client": ["--runs", "--seconds", "--inflight", "--fsync"],
    "failover": ["--runs", "--fsync"],
    "leases": ["--kills", "--rounds", "--ttl-ms", "--fsync", "--out", "--quick"],
    "cpu_per_op": ["--seconds", "--clients", "--window", "--fsync", "--metrics", "--get-share", "--read-mode"],
    "profile_pipelined": ["--seconds", "--clients", "--window", "--fsync", "--top", "--out", "--get-share"],
    "read_mix": ["--runs", "--seconds", "--clients", "--window", "--batch", "--quick"],
    "steady_state": ["--ops", "--fsync", "--sessions", "--window-s", "--snapshot-interval", "--json"],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(DOCUMENTED_TOOLS))
def test_the_documented_bench_tools_take_their_documented_flags(name: str) -> None:
    readme = (Path(__file__).resolve().parent.parent / "bench" / "README.md").read_text()
    assert f"python -m zvsr.bench.{name}" in readme
    done = subprocess.run(
        [sys.executable, "-m", f"zvsr.bench.{name}", "--help"], capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    for flag in DOCUMENTED_TOOLS[name]:
        assert flag in done.stdout, f"{name}: {flag} is documented but not accepted"


# `python -m zvsr.bench.leases --quick`: the smoke run of the lease benchmark. As above, the figures are checked
# for shape and consistency, never against a timing threshold; a spurious expiry or a fencing token that does not
# grow is a wrong answer, not a slow one, and fails the test.


@pytest.mark.timeout(150)
def test_leases_quick_run_writes_well_formed_figures(tmp_path: Path) -> None:
    out = tmp_path / "leases.json"
    finished = _run_module(["zvsr.bench.leases", "--quick", "--out", str(out)], cwd=tmp_path, timeout_s=140)
    assert finished.returncode == 0, finished.stderr[-6000:]
    result = json.loads(out.read_text())
    assert result["schema"] == "zvsr-bench-leases/1"
    assert result["quick"] is True
    settings = result["settings"]
    spurious, takeover = result["spurious"], result["takeover"]
    assert (spurious["kills"], takeover["rounds"]) == (2, 2) == (settings["kills"], settings["rounds"])
    assert len(spurious["failover_s"]) == len(spurious["belief_gap_s"]) == spurious["kills"]
    assert all(_number(value) and value > 0 for value in spurious["failover_s"] + spurious["belief_gap_s"])
    ttl_s = settings["ttl_ms"] / 1000
    assert spurious["outlasted_ttl"] == sum(1 for gap in spurious["belief_gap_s"] if gap > ttl_s)
    assert spurious["spurious_expiries"] == 0 and spurious["lease_alive_at_end"] is True
    assert spurious["keepalives"] > 0
    assert len(takeover["takeover_s"]) == takeover["rounds"]
    assert all(_number(value) and value > 0 for value in takeover["takeover_s"])
    assert takeover["takeover_median_s"] == pytest.approx(median(takeover["takeover_s"]))
    assert takeover["takeover_max_s"] == max(takeover["takeover_s"])
    assert len(takeover["tokens"]) == takeover["rounds"] + 1 and takeover["tokens_increase"] is True
    goals = {goal["name"]: goal for goal in result["goals"]}
    assert set(goals) == {"no_spurious_expiry", "takeover_within_ttl_plus_1s", "tokens_increase"}
    for goal in goals.values():
        assert goal["met"] is _met(goal["value"], goal["op"], goal["bound"]), goal
    assert goals["takeover_within_ttl_plus_1s"]["value"] == takeover["takeover_max_s"]
    assert "goals:" in finished.stdout.splitlines()[-1]


@pytest.mark.timeout(150)
def test_read_mix_alone_measures_every_mode_with_nine_gets_in_ten_and_the_ratios_to_log(tmp_path: Path) -> None:
    """`python -m zvsr.bench.read_mix` (the phase of `zvsr bench`, run alone; 1 load generator x 8 sessions): a
    row per read mode with positive ops/s and p99 and about 90% of the completions gets, then both ratios to log
    mode, each equal to the quotient of the rows printed above it (to the rounding shown)."""
    finished = _run_module(
        ["zvsr.bench.read_mix", "--seconds", "0.6", "--clients", "1", "--window", "8"], cwd=tmp_path, timeout_s=140
    )
    assert finished.returncode == 0, finished.stderr[-6000:]
    lines = finished.stdout.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[1 : 1 + len(READ_MODES)]}
    assert list(rows) == list(READ_MODES), finished.stdout
    ops = {mode: float(values[0].replace(",", "")) for mode, values in rows.items()}
    for mode, (_, p99, gets) in rows.items():
        assert ops[mode] > 0 and float(p99) > 0, finished.stdout
        assert 75.0 <= float(gets.rstrip("%")) <= 98.0, finished.stdout
    ratios = dict(line.split(": ") for line in lines[1 + len(READ_MODES) :])
    assert set(ratios) == {"read_mix_read_index_vs_log", "read_mix_lease_vs_log"}, finished.stdout
    for name, mode in (("read_mix_read_index_vs_log", "read_index"), ("read_mix_lease_vs_log", "lease")):
        assert float(ratios[name].rstrip("x")) == pytest.approx(ops[mode] / ops["log"], abs=0.01), finished.stdout
