"""The client side of VR (§4, "client"), sans-IO: primary discovery and idempotent retry.

One `ClientSession` is one client_id with at most one request outstanding (§4). It keeps the view it believes
current and sends to that view's primary; a Redirect moves it to the view and primary named there (never to an
older view); a timeout re-sends the *same* (client_id, request_number) to every replica, so whichever is primary
answers, from the client table if the request was already executed (rule 8). Errors that mean "not now"
(`view_change`, `unavailable`, `busy`) are retried after a backoff; `bad_request` completes the request.

The proxy, the Python client and the simulator's clients all run this code; they differ only in how they move
bytes and how often they call `tick()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_SESSION_EXPIRED,
    ERROR_TIMEOUT,
    ClientReply,
    Error,
    Redirect,
    Reply,
    Request,
)
from zvsr.protocol.ready import BROADCAST
from zvsr.protocol.timeout import Prng, Timeout

REQUEST_TIMEOUT_TICKS = 20
REQUEST_TIMEOUT_MAX_TICKS = 160
RETRY_AFTER_ERROR_TICKS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """How a request ended: a result, or an error code (`timeout` means the outcome is unknown)."""

    request_number: int
    result: bytes | None = None
    error: str | None = None
    message: str = ""


class ClientSession:
    def __init__(
        self,
        *,
        client_id: int,
        replica_count: int,
        prng: Prng,
        request_number: int = 0,
        view: int = 0,
        request_timeout_ticks: int = REQUEST_TIMEOUT_TICKS,
        request_timeout_max_ticks: int = REQUEST_TIMEOUT_MAX_TICKS,
        deadline_ticks: int | None = None,
    ) -> None:
        assert replica_count >= 1 and request_number >= 0
        self.client_id = client_id
        self.replica_count = replica_count
        self.prng = prng
        self.request_number = request_number  # the last one used; requests go out with +1
        self.view = view
        self.deadline_ticks = deadline_ticks
        self.outstanding: Request | None = None
        self._elapsed = 0
        self._retry = Timeout("request", after=request_timeout_ticks, after_max=request_timeout_max_ticks)
        self._outbox: list[tuple[int, Request]] = []
        self._done: list[Completion] = []

    @property
    def primary(self) -> int:
        return self.view % self.replica_count

    def submit(self, operation: bytes, *, request_number: int | None = None) -> Request:
        """Start a request; the caller must wait for its Completion before submitting another (§4).

        `request_number` is for a proxy relaying a client that numbers its own requests; it must not go
        backwards (the replicas would ignore it). By default the session numbers requests itself.
        """
        assert self.outstanding is None, "a client has at most one outstanding request"
        if request_number is None:
            request_number = self.request_number + 1
        assert request_number >= self.request_number, "request numbers never go backwards"
        self.request_number = request_number
        self.outstanding = Request(client_id=self.client_id, request_number=request_number, operation=operation)
        self._elapsed = 0
        self._retry.start()
        self._outbox.append((self.primary, self.outstanding))
        return self.outstanding

    def on_reply(self, reply: ClientReply) -> None:
        if self.outstanding is None or reply.client_id != self.client_id:
            return
        if reply.request_number != self.outstanding.request_number:
            return  # an answer to an earlier attempt of an earlier request
        if isinstance(reply, Reply):
            self.view = max(self.view, reply.view)
            self._complete(Completion(request_number=reply.request_number, result=reply.result))
        elif isinstance(reply, Redirect):
            # Only replicas in normal status redirect, so the view they name has started. Never go back.
            if reply.view > self.view:
                self.view = reply.view
                self._outbox.append((self.primary, self.outstanding))
        elif isinstance(reply, Error):
            # The view of an Error may be one that never starts (a replica voting in it): keep ours.
            if reply.code in (ERROR_BAD_REQUEST, ERROR_SESSION_EXPIRED):  # final: retrying cannot help
                self._complete(
                    Completion(request_number=reply.request_number, error=reply.code, message=reply.message)
                )
            else:
                # Not now: try again soon (same request_number, so it executes at most once).
                self._retry.after = min(self._retry.after, RETRY_AFTER_ERROR_TICKS)
                self._retry.reset()

    def tick(self) -> None:
        if self.outstanding is None:
            return
        self._elapsed += 1
        self._retry.tick()
        if self.deadline_ticks is not None and self._elapsed >= self.deadline_ticks:
            self._complete(
                Completion(
                    request_number=self.outstanding.request_number,
                    error=ERROR_TIMEOUT,
                    message="no answer in time; the request may or may not have been executed",
                )
            )
            return
        if self._retry.fired():
            self._retry.backoff(self.prng)
            self._outbox.append((BROADCAST, self.outstanding))

    def take_outbox(self) -> list[tuple[int, Request]]:
        out, self._outbox = self._outbox, []
        return out

    def take_completion(self) -> Completion | None:
        return self._done.pop(0) if self._done else None

    def _complete(self, completion: Completion) -> None:
        self.outstanding = None
        self._retry.stop()
        self._done.append(completion)
