"""The client envelope: both ZeroMQ client shapes parse, answers go back in the shape they came, junk is refused.

The last tests run real sockets over inproc: what a REQ, a raw DEALER and a REQ behind a broker look like on a
ROUTER, and that an answer built from the parsed envelope reaches each of them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from zvsr.runtime.envelope import (
    REASON_EMPTY_ROUTING_FRAME,
    REASON_NO_DELIMITER,
    REASON_TOO_FEW_FRAMES,
    REASON_TOO_MANY_FRAMES,
    EnvelopeError,
    answer_frames,
    identity,
    is_delimited,
    parse_client_frames,
    recv_frames,
    send_answer,
)

# --- parsing -------------------------------------------------------------------------------------------------


def test_a_raw_dealer_message_is_identity_then_payload() -> None:
    envelope, payload = parse_client_frames([b"id", b"payload"])
    assert (envelope, payload) == ((b"id",), b"payload")
    assert identity(envelope) == b"id" and not is_delimited(envelope)
    assert answer_frames(envelope, b"answer") == [b"id", b"answer"]


def test_a_raw_dealer_may_send_an_empty_payload_which_is_not_a_delimiter() -> None:
    envelope, payload = parse_client_frames([b"id", b""])
    assert (envelope, payload) == ((b"id",), b"")
    assert not is_delimited(envelope)


def test_a_req_message_keeps_its_delimiter_for_the_answer() -> None:
    envelope, payload = parse_client_frames([b"id", b"", b"payload"])
    assert (envelope, payload) == ((b"id", b""), b"payload")
    assert is_delimited(envelope)
    assert answer_frames(envelope, b"answer") == [b"id", b"", b"answer"]


def test_a_req_behind_brokers_keeps_every_hop() -> None:
    envelope, payload = parse_client_frames([b"id", b"hop1", b"hop2", b"", b"payload"])
    assert envelope == (b"id", b"hop1", b"hop2", b"") and payload == b"payload"
    assert identity(envelope) == b"id" and is_delimited(envelope)


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([], REASON_TOO_FEW_FRAMES),
        ([b"id"], REASON_TOO_FEW_FRAMES),
        ([b"id", b"x", b"payload"], REASON_NO_DELIMITER),
        ([b"id", b"", b"", b"payload"], REASON_EMPTY_ROUTING_FRAME),
        ([b"", b"", b"payload"], REASON_EMPTY_ROUTING_FRAME),
        ([b"id", *[b"hop"] * 6, b"", b"payload"], REASON_TOO_MANY_FRAMES),
    ],
)
def test_frames_of_neither_shape_are_refused_with_a_reason(frames: list[bytes], reason: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_client_frames(frames)
    assert caught.value.reason == reason


def test_the_frame_bound_is_a_parameter_for_the_proxy() -> None:
    frames = [b"id", b"hop", b"", b"payload"]
    assert parse_client_frames(frames, frames_max=4)[1] == b"payload"
    with pytest.raises(EnvelopeError):
        parse_client_frames(frames, frames_max=3)


# --- over real sockets ---------------------------------------------------------------------------------------


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _router(context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.bind(endpoint)
    return router


def _receive(socket: zmq.Socket[bytes], frames_max: int = 8) -> list[bytes]:
    assert socket.poll(5000), "nothing arrived"
    return recv_frames(socket, frames_max)


@pytest.mark.timeout(10)
def test_req_and_dealer_clients_get_answers_in_their_own_shape(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    router = _router(context, "inproc://shapes")
    req = context.socket(zmq.REQ)
    req.connect("inproc://shapes")
    dealer = context.socket(zmq.DEALER)
    dealer.connect("inproc://shapes")

    req.send(b"from req")
    envelope, payload = parse_client_frames(_receive(router))
    assert payload == b"from req" and is_delimited(envelope)
    send_answer(router, envelope, b"to req")
    assert req.poll(5000) and req.recv() == b"to req"  # a REQ takes only [""][payload]

    dealer.send(b"from dealer")
    envelope, payload = parse_client_frames(_receive(router))
    assert payload == b"from dealer" and not is_delimited(envelope)
    send_answer(router, envelope, b"to dealer")
    assert dealer.poll(5000) and dealer.recv_multipart() == [b"to dealer"]


@pytest.mark.timeout(10)
def test_a_req_behind_a_broker_gets_its_answer_back_through_it(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    router = _router(context, "inproc://server")
    frontend = _router(context, "inproc://broker")
    backend = context.socket(zmq.DEALER)
    backend.connect("inproc://server")
    req = context.socket(zmq.REQ)
    req.connect("inproc://broker")

    req.send(b"question")
    backend.send_multipart(frontend.recv_multipart())  # the broker forwards [client id][""][question]
    envelope, payload = parse_client_frames(_receive(router))
    assert payload == b"question" and len(envelope) == 3  # [broker id][client id][""]
    send_answer(router, envelope, b"answer")
    frontend.send_multipart(backend.recv_multipart())  # and the answer back: [client id][""][answer]
    assert req.poll(5000) and req.recv() == b"answer"


@pytest.mark.timeout(10)
def test_an_answer_to_a_client_that_is_gone_fails_at_once(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    router = _router(context, "inproc://gone")
    with pytest.raises(zmq.ZMQError) as caught:
        send_answer(router, (b"nobody", b""), b"answer")
    assert caught.value.errno == zmq.EHOSTUNREACH
    # Refused on the first frame, so nothing half-sent is left to corrupt the next answer.
    dealer = context.socket(zmq.DEALER)
    dealer.connect("inproc://gone")
    dealer.send(b"hello")
    envelope, _ = parse_client_frames(_receive(router))
    send_answer(router, envelope, b"fine")
    assert dealer.poll(5000) and dealer.recv_multipart() == [b"fine"]


@pytest.mark.timeout(10)
def test_recv_frames_keeps_a_bounded_number_of_frames(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    router = _router(context, "inproc://long")
    dealer = context.socket(zmq.DEALER)
    dealer.connect("inproc://long")
    dealer.send_multipart([b"f%d" % i for i in range(100)])
    dealer.send(b"next")
    long = _receive(router, frames_max=3)
    assert len(long) == 4 and long[1:] == [b"f0", b"f1", b"f2"]  # one more than the bound: "too many"
    assert _receive(router, frames_max=3)[1:] == [b"next"]  # the surplus was read: framing stays in step
    with pytest.raises(zmq.Again):
        recv_frames(router, 3)
