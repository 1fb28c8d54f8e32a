"""A newcomer's path, exactly as the README's "Set-up" section shows it, on real processes.

`zvsr cluster up --base-port 31000` in one shell; then, in another shell in the same directory and with no
--config and no ZVSR_* variables, `zvsr kv put a 1`, `zvsr kv get a`, `zvsr status`, `zvsr watch a`, a `curl` of a
metrics URL and `zvsr backup`. The test reads those command lines from README.md and runs each as a separate
process in one temporary directory — only the base port is moved to a free one (and the curl URL's port with it),
so parallel runs cannot collide. Each step checks what the README's comment promises; then Ctrl-C stops the
cluster, which takes its `./.zvsr/cluster.toml` with it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from doc_commands import ROOT, section_code_lines

from zvsr.runtime.backup import read_backup
from zvsr.runtime.cluster_config import DISCOVERY_FILE
from zvsr.runtime.processes import free_base_port, port_is_free, wait_for

README_BASE_PORT = 31000
# What the README's set-up shows, in order: the test runs each (a README change must change this test too).
README_SETUP = [
    "pip install -e .",
    f"zvsr cluster up --base-port {README_BASE_PORT}",
    "zvsr kv put a 1",
    "zvsr kv get a",
    "zvsr status",
    "zvsr watch a",
    f"curl http://127.0.0.1:{README_BASE_PORT + 14}/metrics",
    "zvsr backup --fresh a.zvsrbak",
    "python3 -m pip install -e '.[test]' && clients/install-deps && python3 -m pytest -q",  # this very suite
]


def another_shell() -> dict[str, str]:
    """The environment of a fresh shell: nothing of zvsr's set (PYTHONPATH and PATH are kept)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ZVSR_")}


def run(line: str, cwd: Path, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A `zvsr …` line of the README, run as its own process (this checkout's zvsr, as `python -m zvsr`)."""
    words = line.split()
    assert words[0] == "zvsr", line
    return subprocess.run(
        [sys.executable, "-m", "zvsr", *words[1:]],
        cwd=cwd,
        env=environment or another_shell(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_watch_step(line: str, cwd: Path, base: int) -> None:
    """`zvsr watch a`, started in `cwd` as its own process (no --config): it prints `a` as it is (from the put
    above), then `zvsr kv put a/x 2` from another process shows as a change; Ctrl-C (SIGINT) ends it with 0."""
    words = line.split()
    watch = subprocess.Popen(
        [sys.executable, "-m", "zvsr", *words[1:]],
        cwd=cwd,
        env=another_shell(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.extend(watch.stdout or ()), daemon=True),
        threading.Thread(target=lambda: err.extend(watch.stderr or ()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:

        def started() -> bool:  # stdout and stderr are read by two threads: wait for both lines
            return bool(out) and any(line.startswith("watching 'a'") for line in err)

        wait_for(started, timeout_s=30, what="the watch to start")
        assert [line.rstrip("\n").split("  ")[1:] for line in out] == [["snapshot", "a = 1"]], out
        assert run("zvsr kv put a/x 2", cwd).returncode == 0
        wait_for(lambda: len(out) == 2, timeout_s=30, what="the put to show")
        assert out[1].rstrip("\n").split("  ")[1:] == ["put", "a/x = 2"], out
        watch.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal does
        assert watch.wait(timeout=10) == 0, err
        assert "Traceback" not in "".join(err), err
    finally:
        if watch.poll() is None:
            os.killpg(watch.pid, signal.SIGKILL)
            watch.wait()
        for reader in readers:
            reader.join(timeout=10)


@pytest.mark.timeout(180)
def test_the_readme_set_up_path_works_as_written(tmp_path: Path) -> None:
    lines = section_code_lines(ROOT / "README.md", "## Set-up")
    assert lines == README_SETUP, "the README's set-up changed: make this test run what it shows now"
    base = free_base_port()
    cwd = tmp_path / "project"
    cwd.mkdir()
    up = subprocess.Popen(
        [sys.executable, "-m", "zvsr", "cluster", "up", "--base-port", str(base)],
        cwd=cwd,
        env=another_shell(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    printed: list[str] = []
    assert up.stdout is not None
    reader = threading.Thread(target=lambda: printed.extend(up.stdout or ()), daemon=True)  # drains the pipe
    reader.start()
    try:
        wait_for(
            lambda: up.poll() is not None or any(line.startswith("cluster is up") for line in printed),
            timeout_s=60,
            what="`zvsr cluster up` to say the cluster is up",
        )
        assert up.poll() is None, "".join(printed)
        urls = [url for line in printed for url in re.findall(r"metrics (http://\S+)", line)]
        for line in lines[2:]:
            if line.startswith("zvsr watch"):
                check_watch_step(line, cwd, base)
            elif line.startswith("zvsr "):
                check_step(line, cwd, base)
            elif line.startswith("curl "):
                (url,) = re.findall(r"http://\S+", line)
                moved = re.sub(r":(\d+)/", lambda m: f":{int(m.group(1)) - README_BASE_PORT + base}/", url)
                assert moved in urls, (moved, urls)
                with urllib.request.urlopen(moved, timeout=10) as answer:
                    assert answer.status == 200 and "zvsr_server_view" in answer.read().decode()
            else:
                assert "pytest" in line, f"the README's set-up shows `{line}`, which this test does not run"
        check_the_rest_of_what_cluster_up_printed(printed, urls, base, tmp_path)
        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        assert up.wait(timeout=30) == 0, "".join(printed)
        assert not (cwd / DISCOVERY_FILE).exists() and not (cwd / ".zvsr").exists(), "left behind after Ctrl-C"
        proxy = f"tcp://127.0.0.1:{base}"
        wait_for(lambda: port_is_free(proxy), timeout_s=10, what="the proxy port to be released")
    except BaseException:
        print("".join(printed))
        raise
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        reader.join(timeout=10)


def check_step(line: str, cwd: Path, base: int) -> None:
    """Run one `zvsr …` line of the README in `cwd` and check what its comment promises."""
    done = run(line, cwd)
    assert done.returncode == 0, (line, done.stdout, done.stderr)
    if line == "zvsr kv put a 1":
        assert done.stdout.strip() == "null"
    elif line == "zvsr kv get a":
        assert done.stdout.strip() == "1"
    elif line == "zvsr status":
        # The table (one row per replica) ends at the first blank line; the configuration's members follow.
        table = done.stdout.split("\n\n")[0]
        rows = [row.split() for row in table.splitlines()[1:]]
        assert [row[:2] for row in rows] == [["0", "normal"], ["1", "normal"], ["2", "normal"]], done.stdout
        watches = [f"tcp://127.0.0.1:{base + 10 * (i + 1) + 3}" for i in range(3)]
        metrics = [f"http://127.0.0.1:{base + 10 * (i + 1) + 4}/metrics" for i in range(3)]
        endpoints = [[word for word in row if word.startswith(("tcp://", "http://"))] for row in rows]
        assert endpoints == [list(pair) for pair in zip(watches, metrics, strict=True)]
    elif line.startswith("zvsr backup"):
        backup = read_backup(cwd / line.split()[-1])  # verifies its checksums
        assert backup.cluster_id == 1 and backup.op_number >= 1, "the put is in it"
        assert "verified" in done.stdout
    else:
        raise AssertionError(f"no check for the README's `{line}`")


def check_the_rest_of_what_cluster_up_printed(
    printed: list[str], urls: list[str], base: int, tmp_path: Path
) -> None:
    """Every metrics URL it printed answers, and its `export ZVSR_CONFIG=…` line reaches the cluster from any
    other directory."""
    assert urls == [f"http://127.0.0.1:{base + offset}/metrics" for offset in (4, 14, 24, 34)], urls
    for url in urls:
        metric = "zvsr_proxy_requests_total" if url == urls[0] else "zvsr_server_view"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert metric in answer.read().decode(), url
    (export,) = [line.strip() for line in printed if line.startswith("export ZVSR_CONFIG=")]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run("zvsr kv get a", elsewhere, {**another_shell(), "ZVSR_CONFIG": export.split("=", 1)[1]})
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
