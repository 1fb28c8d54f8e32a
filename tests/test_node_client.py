"""The Node.js client's own tests (`node --test` in clients/node), run as part of the Python suite.

They check the client against the golden vectors and against in-process fake servers, and start a real
cluster of this repository's `zvsr node` and `zvsr proxy` processes with this interpreter (ZVSR_PYTHON) to
talk to it through the proxy and directly. The npm packages must be installed first: `clients/install-deps`
(the README's test command runs it). A missing install fails this test rather than skipping it, so CI cannot
pass without running the Node.js tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

NODE_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "node"
RUN_TIMEOUT_S = 150  # the run takes ~10 s; this bounds a hang on a loaded machine


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_node_client() -> None:
    node = shutil.which("node")
    assert node is not None, "node (Node.js 20+) is not on PATH: run clients/install-deps"
    assert (NODE_CLIENT / "node_modules" / "zeromq").is_dir() and (
        NODE_CLIENT / "node_modules" / "@msgpack" / "msgpack"
    ).is_dir(), f"{NODE_CLIENT / 'node_modules'} is missing: run clients/install-deps (npm ci in clients/node)"
    # Its own session, so a timeout kills the test runner and every test process it started; the clusters the
    # tests start die with them (support/cluster.js).
    process = subprocess.Popen(
        [node, "--test"],
        cwd=NODE_CLIENT,
        env={**os.environ, "ZVSR_PYTHON": sys.executable},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except BaseException:  # a timeout, or pytest-timeout / Ctrl-C interrupting the wait
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        print(output.decode(errors="replace")[-20_000:])
        raise
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"node --test failed (exit {process.returncode}):\n{text[-20_000:]}"
    assert "# fail 0" in text and "# pass" in text, text[-5_000:]
