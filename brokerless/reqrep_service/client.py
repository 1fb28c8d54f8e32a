"""The ledger service's client: a plain ZeroMQ REQ socket and msgpack — it knows nothing of zvsr.

    python -m brokerless.reqrep_service.client [--endpoint E] [--timeout-ms T] COMMAND ...

    deposit ACCOUNT AMOUNT [MEMO]     withdraw ACCOUNT AMOUNT [MEMO]     transfer FROM TO AMOUNT [MEMO]
    balance ACCOUNT                   history ACCOUNT                    stats
    demo ACCOUNT [--count N]          deposits of 1, then checks that each acknowledged one is in the history once

The endpoint is the server's (`server.py`, default tcp://127.0.0.1:5555) — or, unchanged, a zvsr proxy in
front of replicas running `app.py` (`zvsr cluster up`'s proxy is tcp://127.0.0.1:7700).

Written as the zguide's Lazy Pirate client: one request at a time; when no answer comes within the timeout,
close the socket (a REQ socket that lost an answer is stuck) and open a new one. Only read-only requests are
sent again after a timeout: re-sending a deposit whose answer was lost could deposit twice, so a write without
an answer raises `NoAnswer` — its outcome is unknown, and reading the history tells. Error answers
(``{"error": code, "message": text}``) raise `ServiceError`.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from types import TracebackType
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_TIMEOUT_MS = 10_000
READ_ONLY = frozenset({"balance", "history", "stats"})


class ServiceError(Exception):
    """The answer was an error map, ``{"error": code, "message": text}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class NoAnswer(Exception):
    """No answer within the timeout: the request may or may not have been handled."""


class LedgerClient:
    """One REQ socket to `endpoint`; one request at a time. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        read_retries: int = 2,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.read_retries = read_retries
        self._context = context if context is not None else zmq.Context.instance()
        self._socket = self._connect()

    def _connect(self) -> zmq.Socket[bytes]:
        socket = self._context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.endpoint)
        return socket

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request, wait for its answer; retry read-only requests on a new socket after a timeout."""
        payload = msgpack.packb(request, use_bin_type=True)
        attempts = 1 + (self.read_retries if request.get("cmd") in READ_ONLY else 0)
        for _ in range(attempts):
            self._socket.send(payload)
            if self._socket.poll(self.timeout_ms, zmq.POLLIN):
                reply = msgpack.unpackb(self._socket.recv(), raw=False)
                if isinstance(reply, dict) and "error" in reply:
                    raise ServiceError(str(reply["error"]), str(reply.get("message", "")))
                if not isinstance(reply, dict):
                    raise ServiceError("unexpected_reply", repr(reply)[:200])
                return reply
            self._socket.close()  # Lazy Pirate: a REQ socket without its answer cannot send again
            self._socket = self._connect()
        raise NoAnswer(f"no answer from {self.endpoint} within {self.timeout_ms} ms to {request.get('cmd')!r}")

    # --- the service's requests ---

    def deposit(self, account: str, amount: int, memo: str = "") -> dict[str, Any]:
        return self.call({"cmd": "deposit", "account": account, "amount": amount, "memo": memo})

    def withdraw(self, account: str, amount: int, memo: str = "") -> dict[str, Any]:
        return self.call({"cmd": "withdraw", "account": account, "amount": amount, "memo": memo})

    def transfer(self, source: str, target: str, amount: int, memo: str = "") -> dict[str, Any]:
        return self.call({"cmd": "transfer", "from": source, "to": target, "amount": amount, "memo": memo})

    def balance(self, account: str) -> int:
        balance: int = self.call({"cmd": "balance", "account": account})["balance"]
        return balance

    def history(self, account: str) -> list[list[Any]]:
        """Every entry of `account`, oldest first: [entry, delta, memo]."""
        entries: list[list[Any]] = []
        while True:
            after = entries[-1][0] if entries else 0
            page = self.call({"cmd": "history", "account": account, "after": after})
            entries.extend(page["entries"])
            if not page["more"]:
                return entries

    def stats(self) -> dict[str, Any]:
        return self.call({"cmd": "stats"})

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def demo(client: LedgerClient, account: str, count: int) -> int:
    """Deposit 1 `count` times (kill things meanwhile), then check the history.

    0 if every acknowledged deposit is in the history exactly once, 1 if one was lost or applied twice."""
    run = secrets.token_hex(4)
    acknowledged: set[str] = set()
    unknown: set[str] = set()
    for number in range(count):
        memo = f"demo-{run}-{number}"
        try:
            reply = client.deposit(account, 1, memo)
        except (ServiceError, NoAnswer) as error:
            unknown.add(memo)
            print(f"{memo}: {error}", flush=True)
            continue
        acknowledged.add(memo)
        if number % 50 == 0:
            print(f"{memo}: entry {reply['entry']}, balance {reply['balance']}", flush=True)
    seen: dict[str, int] = {}
    for _, _, memo in client.history(account):
        if memo.startswith(f"demo-{run}-"):
            seen[memo] = seen.get(memo, 0) + 1
    lost = sorted(acknowledged - seen.keys())
    doubled = sorted(memo for memo, times in seen.items() if times > 1)
    print(
        f"{len(acknowledged)} deposits acknowledged, {len(unknown)} without a result "
        f"({len(unknown & seen.keys())} of them happened); lost: {lost or 'none'}; "
        f"applied twice: {doubled or 'none'}"
    )
    return 1 if lost or doubled else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"server or proxy ({DEFAULT_ENDPOINT})")
    parser.add_argument("--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS, help="per attempt (default 10000)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("deposit", "withdraw"):
        command = commands.add_parser(name)
        command.add_argument("account")
        command.add_argument("amount", type=int)
        command.add_argument("memo", nargs="?", default="")
    transfer = commands.add_parser("transfer")
    transfer.add_argument("source", metavar="FROM")
    transfer.add_argument("target", metavar="TO")
    transfer.add_argument("amount", type=int)
    transfer.add_argument("memo", nargs="?", default="")
    for name in ("balance", "history"):
        commands.add_parser(name).add_argument("account")
    commands.add_parser("stats")
    demo_command = commands.add_parser("demo")
    demo_command.add_argument("account")
    demo_command.add_argument("--count", type=int, default=500)
    arguments = parser.parse_args(argv)

    with LedgerClient(arguments.endpoint, timeout_ms=arguments.timeout_ms) as client:
        try:
            command = arguments.command
            if command == "demo":
                return demo(client, arguments.account, arguments.count)
            if command in ("deposit", "withdraw"):
                print(getattr(client, command)(arguments.account, arguments.amount, arguments.memo))
            elif command == "transfer":
                print(client.transfer(arguments.source, arguments.target, arguments.amount, arguments.memo))
            elif command == "balance":
                print(client.balance(arguments.account))
            elif command == "history":
                for entry, delta, memo in client.history(arguments.account):
                    print(f"{entry:>8} {delta:>+12} {memo}")
            else:
                print(client.stats())
        except (ServiceError, NoAnswer) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
