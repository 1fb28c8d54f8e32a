"""The client envelope on a ROUTER socket: which frames route an answer back, and which frame is the payload.

Theory of operation
-------------------
A ROUTER prepends the sender's routing id to every message it receives, and routes an outgoing message by its
first frame. Between that id and the payload, the two kinds of ZeroMQ client we serve differ (ARCHITECTURE §4):

- a REQ socket (and Lazy-Pirate clients in any language) sends ``[""][payload]``, so a ROUTER reads
  ``[identity][""][payload]``; REQ through a chain of ROUTER/DEALER brokers adds one routing frame per hop
  before the empty delimiter: ``[identity][hop]…[""][payload]``. A REQ drops everything up to and including
  the delimiter of an answer, and refuses an answer without one;
- a raw DEALER may send just ``[payload]``, read by the ROUTER as ``[identity][payload]``, and expects an answer
  of the same shape (a DEALER that imitates REQ sends the delimiter and gets it back).

So the envelope is simply *every frame before the payload*: ``(identity, "")`` for REQ,
``(identity, hop, "")`` through a broker, ``(identity,)`` for a raw DEALER. An answer is the envelope followed
by the answer's payload — the same shape the request came in, whatever that was. The envelope is a plain tuple
of bytes (no object per message on the hot path), kept by the node and the proxy per client_id to route
answers.

Rules of `parse_client_frames` (everything else is an `EnvelopeError`, counted by the caller):
- at least 2 frames (a ROUTER always adds the identity; a payload must follow);
- exactly 2 frames: ``[identity][payload]`` (raw DEALER), even if the payload happens to be empty;
- 3 or more: the second-to-last frame must be the empty delimiter, and every routing frame before it non-empty
  (a ROUTER never produces an empty routing id, so an empty one means a malformed message);
- at most `frames_max` frames in all (default `CLIENT_ENVELOPE_FRAMES_MAX`): deeper broker chains than that
  are refused rather than remembered.

`recv_frames` reads one multipart message with a bound on how many frames are *kept*: libzmq delivers a
multipart message atomically, and a hostile sender can make it arbitrarily long; the surplus is read and
discarded, never accumulated in a Python list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import zmq

from zvsr.constants import CLIENT_ENVELOPE_FRAMES_MAX

ClientEnvelope = tuple[bytes, ...]
"""Every frame before the payload: the ROUTER identity, any broker hops, and the empty delimiter if present."""

DELIMITER: Final = b""

# Plain ints: pyzmq's flag enums cost an enum operation per use, measurable on the hot path (~0.5 µs/message).
NOBLOCK: Final = int(zmq.NOBLOCK)
NOBLOCK_SNDMORE: Final = int(zmq.NOBLOCK | zmq.SNDMORE)

# pyzmq's Socket.send and recv are Python wrappers (routing_id / group handling, which zvsr never uses) around
# its compiled methods. Calling those directly costs 0.45 instead of 1.15 µs per send and 0.36 instead of
# 0.53 µs per recv (measured with pyzmq 27): a few per request on the proxy's and the primary's hot paths.
_COMPILED_SOCKET: Final[Any] = getattr(zmq.backend, "Socket", None)


def fast_send(socket: zmq.Socket[bytes]) -> Callable[..., Any]:
    """`socket.send`, bound to pyzmq's compiled method when there is one (same arguments and errors)."""
    if _COMPILED_SOCKET is not None and isinstance(socket, _COMPILED_SOCKET):
        method: Callable[..., Any] = _COMPILED_SOCKET.send.__get__(socket)
        return method
    return socket.send


def fast_recv(socket: zmq.Socket[bytes]) -> Callable[..., Any]:
    """`socket.recv`, bound to pyzmq's compiled method when there is one (same arguments and errors)."""
    if _COMPILED_SOCKET is not None and isinstance(socket, _COMPILED_SOCKET):
        method: Callable[..., Any] = _COMPILED_SOCKET.recv.__get__(socket)
        return method
    return socket.recv

REASON_TOO_FEW_FRAMES: Final = "too few frames"
REASON_TOO_MANY_FRAMES: Final = "too many frames"
REASON_NO_DELIMITER: Final = "no empty delimiter before the payload"
REASON_EMPTY_ROUTING_FRAME: Final = "empty routing frame"
ENVELOPE_ERROR_REASONS: Final = frozenset(
    {REASON_TOO_FEW_FRAMES, REASON_TOO_MANY_FRAMES, REASON_NO_DELIMITER, REASON_EMPTY_ROUTING_FRAME}
)


class EnvelopeError(ValueError):
    """Frames that are not a client message of either shape; `reason` is one of ENVELOPE_ERROR_REASONS."""

    def __init__(self, reason: str, frame_count: int) -> None:
        super().__init__(f"{reason} ({frame_count} frames)")
        self.reason = reason


def parse_client_frames(
    frames: Sequence[bytes], *, frames_max: int = CLIENT_ENVELOPE_FRAMES_MAX
) -> tuple[ClientEnvelope, bytes]:
    """(envelope, payload) of a message read from a client-facing ROUTER; EnvelopeError if it is neither shape."""
    count = len(frames)
    if count == 2:  # the common raw-DEALER case first: one comparison
        return (frames[0],), frames[1]
    if count < 2:
        raise EnvelopeError(REASON_TOO_FEW_FRAMES, count)
    if count > frames_max:
        raise EnvelopeError(REASON_TOO_MANY_FRAMES, count)
    if frames[-2] != DELIMITER:
        raise EnvelopeError(REASON_NO_DELIMITER, count)
    envelope = tuple(frames[:-1])
    if DELIMITER in envelope[:-1]:
        raise EnvelopeError(REASON_EMPTY_ROUTING_FRAME, count)
    return envelope, frames[-1]


def answer_frames(envelope: ClientEnvelope, payload: bytes) -> list[bytes]:
    """The frames that carry `payload` back the way the request came (same shape: delimiter or not)."""
    return [*envelope, payload]


def identity(envelope: ClientEnvelope) -> bytes:
    """The ROUTER routing id of the connection the request came in on."""
    return envelope[0]


def is_delimited(envelope: ClientEnvelope) -> bool:
    """True for the REQ shape (`[identity]…[""][payload]`), False for a raw DEALER's `[identity][payload]`."""
    return envelope[-1] == DELIMITER and len(envelope) >= 2


def recv_frames_with_user(socket: zmq.Socket[bytes], frames_max: int) -> tuple[list[bytes], str | None]:
    """`recv_frames`, plus the ``User-Id`` ZAP gave the connection the message came on (None without one):
    with CurveZMQ, the z85 public key that authenticated (zvsr.runtime.security)."""
    recv = socket.recv
    frame = recv(NOBLOCK, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = recv(NOBLOCK, copy=False)
        if len(frames) <= frames_max:
            frames.append(frame.bytes)
    try:
        user = frame.get("User-Id")
    except zmq.ZMQError:  # no such property: the connection was not authenticated by ZAP
        return frames, None
    return frames, user if isinstance(user, str) else None


def recv_frames(socket: zmq.Socket[bytes], frames_max: int) -> list[bytes]:
    """One message, without blocking (raises zmq.Again when there is none).

    Keeps at most `frames_max + 1` frames: a longer message is read to its end but cut there, so
    `len(result) > frames_max` means "too many frames" and nothing more was kept.
    """
    # Frame.more instead of getsockopt(RCVMORE): measured ~35% cheaper per message (no option-enum lookup).
    recv = fast_recv(socket)
    frame = recv(NOBLOCK, copy=False)
    frames = [frame.bytes]
    while frame.more:
        # The rest of a multipart message is already here (atomic delivery): NOBLOCK cannot raise Again.
        frame = recv(NOBLOCK, copy=False)
        if len(frames) <= frames_max:
            frames.append(frame.bytes)
    return frames


def send_answer(socket: zmq.Socket[bytes], envelope: ClientEnvelope, payload: bytes) -> None:
    """`answer_frames(envelope, payload)` on `socket`, without blocking (zmq.Again / ZMQError as from send).

    Frame by frame rather than `send_multipart`, which costs a list and an enum operation per frame. A ROUTER
    refuses (EHOSTUNREACH with ROUTER_MANDATORY, or Again at the high-water mark) on the first frame, so an
    answer is never half sent.
    """
    send = fast_send(socket)
    for frame in envelope:
        send(frame, NOBLOCK_SNDMORE)
    send(payload, NOBLOCK)
