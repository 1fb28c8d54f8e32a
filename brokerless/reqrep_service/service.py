"""The ledger service's request handler: accounts, balances and a journal of every movement.

This is the part of a REQ/REP service that holds the business logic, written the way it was before zvsr: a
class with one method, `handle(request) -> reply`, over msgpack values. `server.py` runs it behind a REP
socket; `app.py` runs the very same class as a replicated zvsr app. Nothing here knows about either.

It is deterministic — the reply and the state depend only on the requests handled so far, never on time,
randomness or the host — which is the one property replication needs. (A service that stamped entries with
`time.time()` would have to take the timestamp from the request instead.)

Requests are maps with key ``"cmd"``; amounts are ints (cents, say), 1..AMOUNT_MAX; account names and memos
are str.

- ``{"cmd": "deposit", "account": a, "amount": n, "memo": m}`` -> ``{"ok": true, "entry": e, "balance": b}``
- ``{"cmd": "withdraw", "account": a, "amount": n, "memo": m}`` -> the same, or
  ``{"ok": false, "reason": "insufficient funds", "balance": b}`` (nothing changes)
- ``{"cmd": "transfer", "from": a, "to": b, "amount": n, "memo": m}`` -> as withdraw (``balance`` is a's)
- ``{"cmd": "balance", "account": a}`` -> ``{"ok": true, "balance": b}`` (0 for an unknown account)
- ``{"cmd": "history", "account": a, "after": e, "limit": k}`` ->
  ``{"ok": true, "entries": [[entry, delta, memo], ...], "more": bool}``
- ``{"cmd": "stats"}`` -> ``{"ok": true, "accounts": n, "entries": e, "total": t}``

``memo`` is optional (default ""). Every movement gets the next entry number (1, 2, ...); a transfer is one
entry, journaled on both accounts (delta -n on the first, +n on the second). ``history`` lists an account's
entries numbered above ``after`` (default 0), at most ``limit`` (default and maximum HISTORY_PAGE_MAX) of them,
oldest first; ``more`` says whether there are others after them. A malformed request gets
``{"error": "bad_request", "message": text}`` and changes nothing.

So losing a deposit shows (its memo is missing from the history) and so does applying one twice (the memo
appears twice, and the balance is off).
"""

from __future__ import annotations

from typing import Any, Final

AMOUNT_MAX: Final = 10**12
MEMO_CHARS_MAX: Final = 200
ACCOUNT_CHARS_MAX: Final = 100
HISTORY_PAGE_MAX: Final = 1000

STATE_FORMAT: Final = "brokerless.ledger"
STATE_VERSION: Final = 1

_FIELDS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "deposit": (frozenset({"account", "amount"}), frozenset({"memo"})),
    "withdraw": (frozenset({"account", "amount"}), frozenset({"memo"})),
    "transfer": (frozenset({"from", "to", "amount"}), frozenset({"memo"})),
    "balance": (frozenset({"account"}), frozenset()),
    "history": (frozenset({"account"}), frozenset({"after", "limit"})),
    "stats": (frozenset(), frozenset()),
}


class BadRequest(Exception):
    pass


def bad_request(message: str) -> dict[str, str]:
    return {"error": "bad_request", "message": message}


class Ledger:
    """The whole state of the service, and the handler of its requests."""

    def __init__(self) -> None:
        self._balances: dict[str, int] = {}
        self._histories: dict[str, list[list[Any]]] = {}  # account -> [[entry, delta, memo], ...]
        self._last_entry = 0

    def handle(self, request: Any) -> Any:
        """The reply to one request. Never raises: a malformed request gets a ``bad_request`` reply."""
        try:
            cmd = _check(request)
            if cmd == "deposit":
                return self._move(None, request["account"], request["amount"], request.get("memo", ""))
            if cmd == "withdraw":
                return self._move(request["account"], None, request["amount"], request.get("memo", ""))
            if cmd == "transfer":
                if request["from"] == request["to"]:
                    raise BadRequest("transfer: 'from' and 'to' are the same account")
                return self._move(request["from"], request["to"], request["amount"], request.get("memo", ""))
            if cmd == "balance":
                return {"ok": True, "balance": self._balances.get(request["account"], 0)}
            if cmd == "history":
                return self._history(request["account"], request.get("after", 0), request.get("limit"))
            return {
                "ok": True,
                "accounts": len(self._balances),
                "entries": self._last_entry,
                "total": sum(self._balances.values()),
            }
        except BadRequest as error:
            return bad_request(str(error))

    def _move(self, source: str | None, target: str | None, amount: int, memo: str) -> dict[str, Any]:
        if source is not None and self._balances.get(source, 0) < amount:
            return {"ok": False, "reason": "insufficient funds", "balance": self._balances.get(source, 0)}
        self._last_entry += 1
        entry = self._last_entry
        if source is not None:
            self._book(source, entry, -amount, memo)
        if target is not None:
            self._book(target, entry, amount, memo)
        shown = source if source is not None else target
        assert shown is not None
        return {"ok": True, "entry": entry, "balance": self._balances[shown]}

    def _book(self, account: str, entry: int, delta: int, memo: str) -> None:
        self._balances[account] = self._balances.get(account, 0) + delta
        self._histories.setdefault(account, []).append([entry, delta, memo])

    def _history(self, account: str, after: Any, limit: Any) -> dict[str, Any]:
        if type(after) is not int or after < 0:
            raise BadRequest("history: 'after' must be an int >= 0")
        if limit is None:
            limit = HISTORY_PAGE_MAX
        if type(limit) is not int or not 1 <= limit <= HISTORY_PAGE_MAX:
            raise BadRequest(f"history: 'limit' must be an int 1..{HISTORY_PAGE_MAX}")
        history = self._histories.get(account, [])
        # Entries are in increasing order: find the first one after `after` by bisection.
        low, high = 0, len(history)
        while low < high:
            middle = (low + high) // 2
            if history[middle][0] <= after:
                low = middle + 1
            else:
                high = middle
        page = history[low : low + limit]
        return {"ok": True, "entries": [list(item) for item in page], "more": low + limit < len(history)}

    # --- the state as a plain value, for backups (and for zvsr snapshots, app.py) ---------------------------

    def export_state(self) -> dict[str, Any]:
        """The whole state as msgpack-able values, in a canonical order: equal states give equal values."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "last_entry": self._last_entry,
            "accounts": {
                name: [self._balances[name], [list(item) for item in self._histories.get(name, [])]]
                for name in sorted(self._balances)
            },
        }

    @classmethod
    def from_state(cls, state: Any) -> Ledger:
        """A ledger holding an exported state; ValueError if `state` is not one (checked before use)."""
        if type(state) is not dict or state.keys() != {"format", "version", "last_entry", "accounts"}:
            raise ValueError("ledger state: not a map with keys format, version, last_entry, accounts")
        if state["format"] != STATE_FORMAT or state["version"] != STATE_VERSION:
            raise ValueError(f"ledger state: unsupported format {state['format']!r} v{state['version']!r}")
        last_entry, accounts = state["last_entry"], state["accounts"]
        if type(last_entry) is not int or last_entry < 0 or type(accounts) is not dict:
            raise ValueError("ledger state: last_entry must be an int >= 0 and accounts a map")
        ledger = cls()
        for name, value in accounts.items():
            if not (type(name) is str and type(value) is list and len(value) == 2 and type(value[1]) is list):
                raise ValueError(f"ledger state: bad account {name!r}")
            balance, history = value
            previous = 0
            for item in history:
                if not (
                    type(item) is list
                    and len(item) == 3
                    and type(item[0]) is int
                    and previous < item[0] <= last_entry
                    and type(item[1]) is int
                    and type(item[2]) is str
                ):
                    raise ValueError(f"ledger state: bad history entry of {name!r}: {item!r}")
                previous = item[0]
            if type(balance) is not int or balance != sum(item[1] for item in history):
                raise ValueError(f"ledger state: the balance of {name!r} is not the sum of its history")
            ledger._balances[name] = balance
            ledger._histories[name] = [list(item) for item in history]
        ledger._last_entry = last_entry
        return ledger


def _check(request: Any) -> str:
    """The command of a well-formed request, or BadRequest saying what is wrong with it."""
    if type(request) is not dict:
        raise BadRequest("a request is a map with key 'cmd'")
    cmd = request.get("cmd")
    if type(cmd) is not str or cmd not in _FIELDS:
        raise BadRequest(f"'cmd' must be one of {', '.join(sorted(_FIELDS))}")
    required, optional = _FIELDS[cmd]
    present = request.keys() - {"cmd"}
    if not required <= present:
        raise BadRequest(f"{cmd}: missing {', '.join(sorted(required - present))}")
    if present - required - optional:
        raise BadRequest(f"{cmd}: unknown field(s) {', '.join(sorted(map(repr, present - required - optional)))}")
    for field in ("account", "from", "to"):
        if field in request:
            value = request[field]
            if type(value) is not str or not 1 <= len(value) <= ACCOUNT_CHARS_MAX:
                raise BadRequest(f"{cmd}: {field!r} must be a str of 1..{ACCOUNT_CHARS_MAX} characters")
    if "amount" in request:
        amount = request["amount"]
        if type(amount) is not int or not 1 <= amount <= AMOUNT_MAX:
            raise BadRequest(f"{cmd}: 'amount' must be an int 1..{AMOUNT_MAX}")
    if "memo" in request:
        memo = request["memo"]
        if type(memo) is not str or len(memo) > MEMO_CHARS_MAX:
            raise BadRequest(f"{cmd}: 'memo' must be a str of at most {MEMO_CHARS_MAX} characters")
    return cmd
