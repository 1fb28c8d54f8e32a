"""The client side of VR (§4, "client"), sans-IO: primary discovery and idempotent retry, direct or via relays.

Direct to the replicas. One `ClientSession` is one client_id with at most one request outstanding (§4). It
keeps the view it believes current and sends to that view's primary; a Redirect moves it to the view and
primary named there (never to an older view); a timeout re-sends the *same* (client_id, request_number) to
every replica, so whichever is primary answers, from the client table if the request was already executed
(rule 8). Errors that mean "not now" (`view_change`, `unavailable`, `busy`) are retried after a backoff;
`bad_request` completes the request.

The proxy, the Python client in direct mode and the simulator's clients all run this code; they differ only in
how they move bytes and how often they call `tick()`.

Via relays (proxies). A relay runs a `ClientSession` of its own for each request toward the replicas and
answers every request it holds by its own deadline (the proxy's `request_timeout_ms`): a result, or an error
saying why not. A client going through relays therefore does not retry on a short timer — that would be a
second retry session racing the relay's, multiplying traffic by the number of relays. A `RelaySession` sends a
request to one relay and waits until its own deadline, sending the *same* (client_id, request_number) again
only when that relay cannot answer:
- the send was refused because there is no connection to the relay (the driver says so with
  `on_send_refused`): the request goes to the next relay at once; when every relay refused, the next relay is
  tried again on the next tick (a local attempt, nothing on the network), so a new client's first request
  leaves as soon as a connection is up;
- the relay answered an error other than a final one (`timeout`, `unavailable`, `busy`): its own session ended
  without a result; while the client's deadline is ahead, the request goes once more, to the next relay, after
  a short pause;
- nothing came back for `quiet_ticks` after the last send: the one loss nothing reports — a relay that
  restarted forgot its table of requests in flight, and the copy or the answer went with the old connection.
  The request goes once more, to the next relay (with one relay, to the same one: it joins a copy it still
  holds), and again after each further quiet period, always within the client's deadline. The period is long
  next to a relay's usual answer (milliseconds), so a live relay sees one copy unless a failover keeps it
  busy that long.
Re-sending is always safe: the relay joins a copy of the request it holds, and the replicas' client table
answers one already executed (rule 8). At the client's deadline the request completes with `timeout`.

Registration (`register=True`; `zvsr.protocol.client_table`). A session registers before its first request, and
again after `session_expired`, transparently for the caller: `submit` sends the register op (request_number 0,
no operation, the session's client_id as its nonce) and keeps the operation; the register's reply names the
session id, which becomes the session's client_id, and the operation goes out as request 1 of it. The caller
sees one Completion, for its operation. A register that fails completes the operation with its error (the
operation was never sent, which a `timeout` does not say: conservative). `session_expired` for an operation
completes it with that code — the outcome is unknown: an earlier attempt may have executed before the session was
evicted — and the next `submit` registers a new session under a new nonce; the operation is never re-sent by the
session, so never executed twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zvsr.constants import (
    RELAY_QUIET_TICKS,
    REQUEST_TIMEOUT_MAX_TICKS,
    REQUEST_TIMEOUT_TICKS,
    RETRY_AFTER_ERROR_TICKS,
)
from zvsr.protocol.client_table import REGISTER_REQUEST_NUMBER, parse_register_result
from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_SESSION_EXPIRED,
    ERROR_TIMEOUT,
    ERROR_UNAVAILABLE,
    ClientReply,
    Error,
    Redirect,
    Reply,
    Request,
)
from zvsr.protocol.ready import BROADCAST
from zvsr.protocol.timeout import Prng, Timeout


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """How a request ended: a result, or an error code (`timeout` means the outcome is unknown)."""

    request_number: int
    result: bytes | None = None
    error: str | None = None
    message: str = ""


class _Session:
    """What both sessions share: one client_id, its request numbers, one request outstanding (§4), the
    caller's deadline, and the outbox / completions the driver takes."""

    def __init__(
        self,
        *,
        client_id: int,
        request_number: int,
        deadline_ticks: int | None,
        register: bool = False,
        registered: bool = False,
        new_nonce: Callable[[], int] | None = None,
    ) -> None:
        assert request_number >= 0
        self.client_id = client_id  # the session id once registered; before, the register's nonce
        self.nonce = client_id
        self._new_nonce = new_nonce
        self.request_number = request_number  # the last one used; requests go out with +1
        self.deadline_ticks = deadline_ticks
        self.register = register
        self.registered = registered or not register
        self._waiting: bytes | None = None  # the operation that goes out once the register answers
        self.outstanding: Request | None = None
        self._elapsed = 0
        self._outbox: list[tuple[int, Request]] = []
        self._done: list[Completion] = []

    def _start(self, operation: bytes, request_number: int | None) -> Request:
        """Number a new request (the caller's number, for a proxy relaying a client that numbers its own, must
        not go backwards: the replicas would ignore it) and make it the outstanding one. A session that must
        register first sends its register op, and keeps `operation` until it answers."""
        assert self.outstanding is None, "a client has at most one outstanding request"
        self._elapsed = 0
        if not self.registered:
            self._waiting = operation
            self.request_number = REGISTER_REQUEST_NUMBER
            self.outstanding = Request(
                client_id=self.client_id, request_number=REGISTER_REQUEST_NUMBER, operation=b""
            )
            return self.outstanding
        return self._number(operation, request_number)

    def _number(self, operation: bytes, request_number: int | None) -> Request:
        if request_number is None:
            request_number = self.request_number + 1
        assert request_number >= self.request_number, "request numbers never go backwards"
        self.request_number = request_number
        self.outstanding = Request(client_id=self.client_id, request_number=request_number, operation=operation)
        return self.outstanding

    def _registered(self, reply: Reply) -> Request | None:
        """The register answered: continue as its session with the operation kept (its first request). None if
        the answer names no session (then the operation completes `unavailable`)."""
        session = parse_register_result(reply.result)
        operation, self._waiting = self._waiting, None
        self.outstanding = None
        assert operation is not None
        if not session:
            self._complete(Completion(request_number=1, error=ERROR_UNAVAILABLE, message="bad register reply"))
            return None
        self.client_id, self.request_number, self.registered = session, 0, True
        return self._number(operation, None)

    def _answers_outstanding(self, reply: ClientReply) -> bool:
        """Is this an answer to the request in flight? (Not to an earlier attempt of an earlier request.)"""
        outstanding = self.outstanding
        return (
            outstanding is not None
            and reply.client_id == self.client_id
            and reply.request_number == outstanding.request_number
        )

    def _final(self, reply: Reply | Error) -> bool:
        """Complete the request if `reply` ends it: a result, or an error retrying cannot help."""
        if isinstance(reply, Reply):
            self._complete(Completion(request_number=reply.request_number, result=reply.result))
            return True
        if reply.code in (ERROR_BAD_REQUEST, ERROR_SESSION_EXPIRED):
            message = reply.message
            if reply.code == ERROR_SESSION_EXPIRED and self.register:
                # The next submit registers a new session, under a new nonce: a register with the old one could
                # be answered with this very session (if a stale replica refused it), whose numbers are used.
                self.registered = False
                if self._new_nonce is not None:
                    self.nonce = self._new_nonce()
                self.client_id = self.nonce
                message += "; the outcome of this request is unknown (an earlier attempt may have executed)"
            self._complete(Completion(request_number=reply.request_number, error=reply.code, message=message))
            return True
        return False

    def _complete_registering(self, completion: Completion) -> Completion:
        """A register that ended without a session (its error is the operation's: the driver words it as for any
        request; a `timeout` is conservative, as the operation kept was never sent)."""
        if self._waiting is None:
            return completion
        self._waiting = None
        self.request_number = 0
        message = f"{completion.message} (while registering a session: the operation was not sent)"
        return Completion(request_number=completion.request_number, error=completion.error, message=message)

    def _time_out(self) -> None:
        """The caller's deadline passed (each session counts `_elapsed` in its own `tick`, inline: the proxy
        ticks every session in flight a hundred times a second)."""
        assert self.outstanding is not None
        self._complete(
            Completion(
                request_number=self.outstanding.request_number,
                error=ERROR_TIMEOUT,
                message="no answer in time; the request may or may not have been executed",
            )
        )

    def take_outbox(self) -> list[tuple[int, Request]]:
        out, self._outbox = self._outbox, []
        return out

    def take_completion(self) -> Completion | None:
        return self._done.pop(0) if self._done else None

    def _complete(self, completion: Completion) -> None:
        self.outstanding = None
        self._done.append(self._complete_registering(completion))


class ClientSession(_Session):
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
        register: bool = False,
        registered: bool = False,
        new_nonce: Callable[[], int] | None = None,
    ) -> None:
        assert replica_count >= 1
        super().__init__(
            client_id=client_id,
            request_number=request_number,
            deadline_ticks=deadline_ticks,
            register=register,
            registered=registered,
            new_nonce=new_nonce,
        )
        self.replica_count = replica_count
        # The configuration it addresses (§7): replica ids, and the view its first member leads. Epoch 0's is
        # 0..n-1 from view 0; `learn_configuration` moves it to a later epoch's.
        self.members: tuple[int, ...] = tuple(range(replica_count))
        self.start_view = 0
        self.prng = prng
        self.view = view
        self._retry = Timeout("request", after=request_timeout_ticks, after_max=request_timeout_max_ticks)

    @property
    def primary(self) -> int:
        # Round robin over the members from the configuration's first view; for epoch 0's 0..n-1 from view 0 this
        # is `primary_of`. (A proxy may address ids other than 0..n-1 from view 0 until it learns better.)
        return self.members[(self.view - self.start_view) % len(self.members)]

    def learn_configuration(self, members: tuple[int, ...], start_view: int) -> None:
        """A later epoch's configuration (members in order, its first view), learned by whoever drives the session
        (a proxy from the replicas' heartbeats, the simulator from the replicas). Views go on across epochs, so
        the session never goes back to an older one."""
        if start_view < self.start_view:
            return
        self.members, self.start_view = members, start_view
        self.replica_count = len(members)
        self.view = max(self.view, start_view)

    def submit(self, operation: bytes, *, request_number: int | None = None) -> Request:
        """Start a request; the caller must wait for its Completion before submitting another (§4).

        `request_number` is for a proxy relaying a client that numbers its own requests; by default the session
        numbers requests itself.
        """
        request = self._start(operation, request_number)
        self._retry.start()
        self._outbox.append((self.primary, request))
        return request

    def on_reply(self, reply: ClientReply) -> None:
        outstanding = self.outstanding
        if outstanding is None or reply.request_number != outstanding.request_number:
            return  # nothing in flight, or an answer to an earlier attempt of an earlier request
        if reply.client_id != self.client_id:
            return
        if type(reply) is Reply:  # the common case, first (the proxy runs this once per relayed answer)
            if reply.view > self.view:
                self.view = reply.view
            if self._waiting is not None:
                if (request := self._registered(reply)) is not None:
                    self._retry.start()
                    self._outbox.append((self.primary, request))
                return None
            return self._complete(Completion(request_number=reply.request_number, result=reply.result))
        if isinstance(reply, Redirect):
            # Only replicas in normal status redirect, so the view they name has started. Never go back.
            if reply.view > self.view:
                self.view = reply.view
                self._outbox.append((self.primary, outstanding))
        elif not self._final(reply):
            # "Not now" (the view of an Error may be one that never starts: keep ours): try again soon, with the
            # same request_number, so it executes at most once.
            self._retry.after = min(self._retry.after, RETRY_AFTER_ERROR_TICKS)
            self._retry.reset()

    def tick(self) -> None:
        if self.outstanding is None:
            return
        self._retry.tick()
        self._elapsed += 1
        if self.deadline_ticks is not None and self._elapsed >= self.deadline_ticks:
            return self._time_out()
        if self._retry.fired():
            self._retry.backoff(self.prng)
            self._outbox.append((BROADCAST, self.outstanding))

    def ticks_until_due(self) -> int:
        """The number of the next tick (1 = the next one) at which `tick` acts — re-sends or times out — while a
        request is outstanding. A driver with many sessions (the proxy) calls `tick` only then and covers the
        ticks before it with `advance`: the same session, without a call per session per tick."""
        assert self.outstanding is not None
        due = self._retry.after - self._retry.elapsed
        if self.deadline_ticks is not None:
            due = min(due, self.deadline_ticks - self._elapsed)
        return max(1, due)

    def advance(self, ticks: int) -> None:
        """`ticks` ticks at once, in none of which `tick` would act (fewer than `ticks_until_due()`)."""
        if self.outstanding is None or ticks == 0:
            return
        assert 0 < ticks < self.ticks_until_due(), "advance must not skip a tick that acts"
        self._retry.advance(ticks)
        self._elapsed += ticks

    def _complete(self, completion: Completion) -> None:
        self._retry.stop()
        super()._complete(completion)


class RelaySession(_Session):
    """One client_id going through `relay_count` relays (proxies), at most one request outstanding (§4).

    `relay` is the relay the request in flight went to last, and where the next request goes first (see the
    module docstring for when the request moves on). `submit`, `on_reply`, `tick`, `take_outbox` and
    `take_completion` work as in `ClientSession`; outbox destinations are relay indexes.
    """

    def __init__(
        self,
        *,
        client_id: int,
        relay_count: int,
        request_number: int = 0,
        relay: int = 0,
        deadline_ticks: int | None = None,
        quiet_ticks: int = RELAY_QUIET_TICKS,
        register: bool = False,
        registered: bool = False,
        new_nonce: Callable[[], int] | None = None,
    ) -> None:
        assert relay_count >= 1 and 0 <= relay < relay_count
        super().__init__(
            client_id=client_id,
            request_number=request_number,
            deadline_ticks=deadline_ticks,
            register=register,
            registered=registered,
            new_nonce=new_nonce,
        )
        self.relay_count = relay_count
        self.relay = relay
        self._refused: set[int] = set()  # relays that refused this round's send (not connected)
        self._connect_wait = False  # every relay refused: try again next tick
        self._quiet = Timeout("relay quiet", after=quiet_ticks)  # since the last send
        self._pause = Timeout("relay pause", after=RETRY_AFTER_ERROR_TICKS)  # after a relay's error answer

    def submit(self, operation: bytes, *, request_number: int | None = None) -> Request:
        """Start a request; the caller waits for its Completion before submitting another (§4)."""
        request = self._start(operation, request_number)
        self._new_round(self.relay)  # the relay that took the last request
        return request

    def on_send_refused(self, relay: int) -> None:
        """The driver could not hand the request to `relay` (no connection to it): it never left."""
        if self.outstanding is None:
            return
        self._refused.add(relay)
        for step in range(1, self.relay_count):
            candidate = (relay + step) % self.relay_count
            if candidate not in self._refused:
                self._send(candidate)
                return
        self._connect_wait = True

    def on_reply(self, reply: ClientReply) -> None:
        # A Redirect never comes from a relay (it follows them itself): nothing to learn from one.
        if not self._answers_outstanding(reply) or isinstance(reply, Redirect):
            return
        if type(reply) is Reply and self._waiting is not None:
            if self._registered(reply) is not None:
                self._new_round(self.relay)
            return
        if not self._final(reply) and not self._pause.running:
            # The relay's own session ended without a result, or it refused the request: ask the next relay,
            # after a pause (a relay refusing at once must not make us spin).
            self._pause.start()

    def tick(self) -> None:
        if self.outstanding is None:
            return
        self._quiet.tick()
        self._pause.tick()
        self._elapsed += 1
        if self.deadline_ticks is not None and self._elapsed >= self.deadline_ticks:
            return self._time_out()
        if self._connect_wait or self._pause.fired() or self._quiet.fired():
            self._new_round((self.relay + 1) % self.relay_count)

    def _new_round(self, relay: int) -> None:
        self._refused.clear()
        self._connect_wait = False
        self._send(relay)

    def _send(self, relay: int) -> None:
        assert self.outstanding is not None
        self.relay = relay
        self._outbox.append((relay, self.outstanding))
        self._pause.stop()
        self._quiet.start()  # the quiet period counts from the last send

    def _complete(self, completion: Completion) -> None:
        self._connect_wait = False
        self._quiet.stop()
        self._pause.stop()
        super()._complete(completion)
