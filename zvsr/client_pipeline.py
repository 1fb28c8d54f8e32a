"""Pipelining for `AsyncClient` through proxies: concurrent calls on sessions of their own, sent as RequestBatches.

Theory of operation
-------------------
A VR client has at most one request outstanding (§4), so an `AsyncClient` alone would run the calls of
``asyncio.gather(*(client.incr("n") for _ in range(64)))`` one after another. Through proxies it keeps a pool
of *lanes* instead: each lane is an ordinary `_Exchange` (its own client_id and request numbers, its own deadline,
retries, attempts and session-expired handling — exactly what a single call runs), and a call in flight holds
one lane. At most `CLIENT_PIPELINE_MAX` calls are in flight; more wait for a lane. The first lane is the client's
own exchange, so a client used one call at a time keeps its one client_id.

A lane's exchange sends into a `_Queued` socket, which collects the encoded request per proxy; the requests of
one event-loop turn leave together when the loop next runs the send (`loop.call_soon`), as RequestBatches of at
most `BATCH_MESSAGES_MAX` elements and `CLIENT_MESSAGE_BYTES_MAX` bytes (`zvsr.wire.batch.batches`). A lone
request goes as the plain Request it always was. A proxy answers a route that batched in ReplyBatches; one task
(the pump, running while calls are in flight) reads the sockets, splits batches, hands each answer to the lane of
its client_id (through its `_Queued` socket, so the exchange reads it as it would from the proxy) and runs each
lane's ticks. The answer, or the exception, is each caller's own: the caller reads its lane's result itself.

A `_Queued` socket refuses a send (`zmq.Again`, as the real one does under ZMQ_IMMEDIATE) when its proxy's
socket is not writable, so a lane moves to the next proxy at once as a single call would. A batch the real
socket still refuses when it leaves is lost like any lost attempt: the lanes send it again after
`CLIENT_PROXY_QUIET_MS` (never unsafe: every attempt carries the same client_id and request number).

Direct to replicas (`AsyncClient(replicas=...)`) the client sends singly as before: there each exchange follows
the replicas' configuration itself (sockets opened and closed as it learns one), which lanes would have to share.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import zmq
import zmq.asyncio

from zvsr.constants import CLIENT_MESSAGE_BYTES_MAX, CLIENT_PIPELINE_MAX
from zvsr.wire.batch import batches, decode_reply_batch, encode_request_batch, is_reply_batch
from zvsr.wire.codec import DecodeError, decode_client_reply

if TYPE_CHECKING:  # the client module imports this one
    from zvsr.client import _Exchange

_NOBLOCK = zmq.NOBLOCK


class _Queued:
    """What a lane's exchange takes for a proxy's socket: sends are queued for this turn's batch, and receives
    give the answers the pump handed to this lane."""

    def __init__(self, real: zmq.Socket[bytes], outbox: list[bytes]) -> None:
        self._real = real
        self._outbox = outbox
        self.inbox: deque[bytes] = deque()

    def send(self, data: bytes, flags: int = 0) -> None:
        if not cast(int, self._real.getsockopt(zmq.EVENTS)) & zmq.POLLOUT:
            raise zmq.Again()  # no connection to this proxy (IMMEDIATE) or its queue is full
        self._outbox.append(data)

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        self._real.send_multipart(frames, flags)

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self.inbox:
            raise zmq.Again()
        return [self.inbox.popleft()]


class Pipeline:
    """The lanes of one `AsyncClient` over its proxies' sockets (`shadows`, polled through `poller`, whose
    sockets `index` maps to proxy indexes). `first` becomes the first lane; `make` builds another exchange."""

    def __init__(
        self,
        first: _Exchange,
        shadows: dict[int, zmq.Socket[bytes]],
        poller: zmq.asyncio.Poller,
        index: dict[Any, int],
        make: Callable[[dict[int, zmq.Socket[bytes]]], _Exchange],
    ) -> None:
        self._shadows = shadows
        self._poller = poller
        self._index = index
        self._make = make
        self._outboxes: dict[int, list[bytes]] = {i: [] for i in shadows}
        self._queues: dict[_Exchange, dict[int, _Queued]] = {}
        self._lanes: list[_Exchange] = []
        self._free: list[_Exchange] = []
        self._by_client: dict[int, _Exchange] = {}
        self._key_of: dict[_Exchange, int] = {}  # the client_id each lane is filed under in `_by_client`
        self._busy: dict[_Exchange, asyncio.Future[None]] = {}
        self._slots = asyncio.Semaphore(CLIENT_PIPELINE_MAX)
        self._send_scheduled = False
        self._pump_task: asyncio.Task[None] | None = None
        self._closed = False
        self.counters: dict[str, int] = {"request batches sent": 0, "requests sent": 0, "sends refused": 0}
        queues = self._new_queues()
        first.sockets = cast(dict[int, zmq.Socket[bytes]], queues)
        self._adopt(first, queues)
        self._free.append(first)

    def _new_queues(self) -> dict[int, _Queued]:
        return {i: _Queued(socket, self._outboxes[i]) for i, socket in self._shadows.items()}

    def _adopt(self, lane: _Exchange, queues: dict[int, _Queued]) -> None:
        self._queues[lane] = queues
        self._lanes.append(lane)
        self._track(lane)

    def _track(self, lane: _Exchange) -> None:
        """File `lane` under its current client_id: a session's register names its session id, and one that
        expired registers anew, so a lane's answers change address in the middle of a call."""
        key = self._key_of.get(lane)
        if key == lane.client_id:
            return
        if key is not None and self._by_client.get(key) is lane:
            del self._by_client[key]
        self._by_client[lane.client_id] = lane
        self._key_of[lane] = lane.client_id

    def _lane(self) -> _Exchange:
        if self._free:
            return self._free.pop()
        queues = self._new_queues()
        lane = self._make(cast(dict[int, zmq.Socket[bytes]], queues))
        self._adopt(lane, queues)
        return lane

    async def request(self, operation: bytes) -> bytes:
        """`operation`'s result on a lane of its own, sent with this turn's other requests."""
        async with self._slots:
            lane = self._lane()
            try:
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                lane.begin(operation)
                self._busy[lane] = future
                self._settle(lane)
                self._schedule_send()
                if self._pump_task is None:
                    self._pump_task = asyncio.ensure_future(self._pump())
                try:
                    await future
                except BaseException:  # also asyncio.CancelledError: the caller gave up
                    self._busy.pop(lane, None)
                    lane.abandon()
                    raise
                return lane.result()
            finally:
                self._track(lane)
                self._free.append(lane)

    def close(self) -> None:
        self._closed = True
        if self._pump_task is not None:
            self._pump_task.cancel()

    # --- the pump ---

    async def _pump(self) -> None:
        try:
            while self._busy:
                wait = min(lane.wait_ms() for lane in self._busy)
                for socket, _ in await self._poller.poll(wait):
                    index = self._index.get(socket)
                    if index is not None:
                        self._receive(index)
                for lane in list(self._busy):
                    lane.advance()
                    self._settle(lane)
                self._send()
        except BaseException as error:  # a closed client, a socket error: every call in flight ends with it
            failure = RuntimeError("the client is closed") if self._closed else error
            for future in self._busy.values():
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(error, Exception):
                raise
        finally:
            self._pump_task = None

    def _receive(self, index: int) -> None:
        socket = self._shadows[index]
        while True:
            try:
                frames = socket.recv_multipart(_NOBLOCK)
            except zmq.Again:
                return
            data = frames[-1]
            try:
                elements = decode_reply_batch(data) if is_reply_batch(data) else [data]
            except DecodeError:
                continue  # not from a zvsr proxy; the lanes' own deadlines cover anything lost
            for element in elements:
                try:
                    client_id = decode_client_reply(element).client_id
                except DecodeError:
                    continue
                lane = self._by_client.get(client_id)
                if lane is None or lane not in self._busy:
                    continue  # a late answer to a call that ended
                queue = self._queues[lane][index]
                queue.inbox.append(element)
                lane.drain(index)
                queue.inbox.clear()
                self._settle(lane)

    def _settle(self, lane: _Exchange) -> None:
        self._track(lane)
        if lane.completion is not None:
            future = self._busy.pop(lane, None)
            if future is not None and not future.done():
                future.set_result(None)

    # --- sending this turn's requests ---

    def _schedule_send(self) -> None:
        if not self._send_scheduled:
            self._send_scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._send_scheduled = False
        if self._closed:
            return
        for index, outbox in self._outboxes.items():
            if not outbox:
                continue
            queued = outbox[:]
            outbox.clear()
            socket = self._shadows[index]
            for batched, group in batches(queued, CLIENT_MESSAGE_BYTES_MAX):
                try:
                    socket.send(encode_request_batch(group) if batched else group[0], _NOBLOCK)
                except zmq.Again:
                    self.counters["sends refused"] += 1  # lost attempts: re-sent after the quiet period
                    continue
                self.counters["request batches sent"] += batched
                self.counters["requests sent"] += len(group)
