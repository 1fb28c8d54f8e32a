"""Fixtures shared by the ZeroMQ tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A context per test; terminating it hangs (and the test times out) if a socket was left open."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield context
    context.term()
