"""Log lines start with the replica and its state, in text and in JSON; bad-input warnings are rate-limited."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from zvsr import constants
from zvsr.runtime.logs import RateLimitedWarnings, ReplicaLogger, setup_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    setup_logging("debug", "text", stream=buffer)
    yield buffer
    logger = logging.getLogger("zvsr")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_text_lines_start_with_replica_status_and_view(stream: io.StringIO) -> None:
    state = [("normal", 3)]
    log = ReplicaLogger(logging.getLogger("zvsr.test"), replica=1, context=lambda: state[0])
    log.info("became primary of view %d", 3)
    state[0] = ("view_change", 4)  # read when the line is written, not when the logger was made
    log.warning("peer: decode error (not_msgpack): junk")
    assert stream.getvalue().splitlines() == [
        "r1 normal v3: became primary of view 3",
        "r1 view_change v4: WARNING peer: decode error (not_msgpack): junk",
    ]


def test_json_lines_carry_the_same_fields(stream: io.StringIO) -> None:
    setup_logging("info", "json", stream=stream)  # replaces the text handler: one line per record
    log = ReplicaLogger(logging.getLogger("zvsr.test"), replica=2, context=lambda: ("recovering", 0))
    log.debug("not written at info")
    log.info("recovery started")
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert {k: entry[k] for k in ("level", "replica", "status", "view", "msg")} == {
        "level": "info",
        "replica": 2,
        "status": "recovering",
        "view": 0,
        "msg": "recovery started",
    }
    assert entry["ts"].endswith("Z") and "T" in entry["ts"]


def test_lines_without_a_replica_start_with_the_logger_name(stream: io.StringIO) -> None:
    logging.getLogger("zvsr.proxy").info("listening")
    assert stream.getvalue() == "zvsr.proxy: listening\n"


def test_bad_input_warnings_are_rate_limited_per_reason(stream: io.StringIO) -> None:
    now = [100.0]
    warnings = RateLimitedWarnings(logging.getLogger("zvsr.test"), interval_ms=1000, clock=lambda: now[0])
    assert warnings.warn("client: decode error (not_msgpack)", "first")
    assert not warnings.warn("client: decode error (not_msgpack)", "second")
    assert not warnings.warn("client: decode error (not_msgpack)", "third")
    assert warnings.warn("peer: wrong identity", "another reason is not held back")
    now[0] += 1.0
    assert warnings.warn("client: decode error (not_msgpack)", "fourth")
    assert stream.getvalue().splitlines() == [
        "zvsr.test: WARNING client: decode error (not_msgpack): first",
        "zvsr.test: WARNING peer: wrong identity: another reason is not held back",
        "zvsr.test: WARNING client: decode error (not_msgpack): fourth (2 more suppressed)",
    ]


def test_peer_controlled_detail_is_cut(stream: io.StringIO) -> None:
    RateLimitedWarnings(logging.getLogger("zvsr.test")).warn("reason", "x" * 100_000)
    assert len(stream.getvalue()) < constants.LOG_DETAIL_CHARS_MAX + 100


def test_setup_logging_refuses_unknown_levels_and_formats() -> None:
    with pytest.raises(ValueError):
        setup_logging("loud")
    with pytest.raises(ValueError):
        setup_logging("info", "xml")
