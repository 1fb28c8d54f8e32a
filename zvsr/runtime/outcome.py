"""What a client-side relay knows about a request that got no result: was it executed, or might it have been?

Theory of operation
-------------------
A request that timed out may have been executed: some attempt may have reached the primary, been committed,
and only the answer was lost. `timeout` says exactly that ("outcome unknown"). Sometimes we know more. Each
attempt that leaves us either is answered or is not; an answer that *refuses* it — a `Redirect` from a backup,
an `Error` of `busy`, `unavailable` or `view_change` — means that attempt was not put in the log
(`zvsr.protocol.messages.Error`). So when every attempt that left was refused, and none left before this
request was submitted, the request was certainly not executed, and the caller may be told the specific reason
(`unavailable` / `busy`) instead of `timeout`. When nothing left at all (no replica connected), it was not
executed either: `unavailable`.

ZeroMQ never duplicates a message, and every answer names (client_id, request_number), so counting attempts
that left and refusals of this request_number is sound — provided the count starts with the first attempt of
that request_number. A re-submission of a number that was already submitted (a client re-sending after a lost
answer) is therefore never "known": earlier attempts may have executed it (`fresh=False`).

The proxy and the Python client both keep one `Attempts` per outstanding request; they differ in what an
"attempt" is (a send to a replica, a send to a proxy). The sans-IO `ClientSession` could track this itself one
day; it is kept outside so the protocol core stays as it is.
"""

from __future__ import annotations

from typing import Final

from zvsr.protocol.messages import (
    ERROR_BUSY,
    ERROR_TIMEOUT,
    ERROR_UNAVAILABLE,
    ERROR_VIEW_CHANGE,
    ClientReply,
    Error,
    Redirect,
)

# Error codes that refuse an attempt without executing it, and what the caller is told if all attempts got one.
_REFUSALS: Final = {
    ERROR_BUSY: ERROR_BUSY,
    ERROR_UNAVAILABLE: ERROR_UNAVAILABLE,
    ERROR_VIEW_CHANGE: ERROR_UNAVAILABLE,
}


class Attempts:
    """Counts the attempts of one request that left and the answers that refused one."""

    __slots__ = ("sent", "refused", "last_error", "fresh")

    def __init__(self) -> None:
        self.sent = 0
        self.refused = 0
        self.last_error: Error | None = None
        self.fresh = True

    def start(self, *, fresh: bool) -> None:
        """A new request_number (`fresh`), or a re-submission of one already tried (never "known")."""
        self.sent = 0
        self.refused = 0
        self.last_error = None
        self.fresh = fresh

    def on_answer(self, reply: ClientReply) -> None:
        """An answer to the outstanding request_number (the caller has checked client_id and number)."""
        if isinstance(reply, Redirect):
            self.refused += 1
        elif isinstance(reply, Error):
            self.last_error = reply
            if reply.code in _REFUSALS:
                self.refused += 1

    def final_error(self, *, timeout_ms: int, target: str) -> tuple[str, str]:
        """(code, message) for a request that got no result within `timeout_ms`; `target` names the peers."""
        last = self.last_error
        seen = f" (last answer: {last.code}: {last.message})" if last is not None and last.message else ""
        if self.fresh and self.sent == 0:
            return ERROR_UNAVAILABLE, f"no {target} reachable within {timeout_ms} ms; the request was not executed"
        if self.fresh and self.refused >= self.sent:
            code = _REFUSALS.get(last.code, ERROR_UNAVAILABLE) if last is not None else ERROR_UNAVAILABLE
            reason = f"{last.code}: {last.message}" if last is not None else "no primary reachable"
            return code, f"every attempt was refused ({reason}); the request was not executed"
        return (
            ERROR_TIMEOUT,
            f"no answer within {timeout_ms} ms; the request may or may not have been executed{seen}",
        )
