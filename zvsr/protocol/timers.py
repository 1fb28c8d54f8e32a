"""The replica's timeouts, grouped by the role that owns them (ARCHITECTURE rule 11: timers belong to roles).

Theory of operation. Each role runs exactly its own timers and no other:
- primary (normal status): `heartbeat` (send Commit even under load) and `prepare_resend` (re-send prepares a
  backup has not acknowledged: ZeroMQ drops silently);
- backup (normal status): `primary` (suspect the primary after silence; jittered so backups do not all start a
  view change at once), while it suspects, `probe` (re-send StartViewChangeProbe: the pre-vote of
  docs/design.md) and, while it is missing ops, `repair` (re-ask GetState / the next snapshot chunk);
- view change: `view_change_resend` (re-send StartViewChange) and `view_change` (give up on a view whose
  primary stays silent and try the next — or stay, and re-send DoViewChange — backing off);
- recovering: `recovery` (re-send Recovery, or the next snapshot ask);
- transitioning (§7: catching up with a later epoch) and leaving: none (the replica's catch-up and epoch
  announcement timers run beside the roles, in `ReplicaState`).
Entering a role goes through one method here, which stops every timer of the other roles, so no stale timer
of an old role can fire in a new one. Handlers reset the timers of their role (a heartbeat of our primary
resets `primary`, say); only the `enter_*` methods start or stop a role's set.
"""

from __future__ import annotations

from zvsr.protocol.config import Config
from zvsr.protocol.timeout import Prng, Timeout


class RoleTimers:
    __slots__ = (
        "heartbeat",
        "prepare_resend",
        "primary",
        "probe",
        "repair",
        "view_change_resend",
        "view_change",
        "recovery",
        "_all",
        "_primary_jitter_ticks",
    )

    def __init__(self, config: Config) -> None:
        self.heartbeat = Timeout("heartbeat", after=config.heartbeat_ticks)
        self.prepare_resend = Timeout("prepare_resend", after=config.prepare_resend_ticks)
        self.primary = Timeout("primary", after=config.primary_timeout_ticks)
        self.probe = Timeout("probe", after=config.view_change_resend_ticks)
        self.repair = Timeout("repair", after=config.repair_ticks)
        self.view_change_resend = Timeout("view_change_resend", after=config.view_change_resend_ticks)
        self.view_change = Timeout(
            "view_change", after=config.view_change_timeout_ticks, after_max=config.view_change_timeout_max_ticks
        )
        self.recovery = Timeout("recovery", after=config.recovery_resend_ticks)
        self._all = (
            self.heartbeat,
            self.prepare_resend,
            self.primary,
            self.probe,
            self.repair,
            self.view_change_resend,
            self.view_change,
            self.recovery,
        )
        self._primary_jitter_ticks = config.primary_timeout_jitter_ticks

    def tick(self) -> None:
        for timeout in self._all:
            timeout.tick()

    def _stop_all_but(self, *keep: Timeout) -> None:
        for timeout in self._all:
            if timeout not in keep:
                timeout.stop()

    def enter_primary(self) -> None:
        self._stop_all_but()
        self.heartbeat.start()
        self.prepare_resend.start()

    def enter_backup(self, prng: Prng) -> None:
        """Also when a backup stays a backup in a new view: its primary gets a fresh, jittered period."""
        self._stop_all_but()
        self.primary.jitter(prng, self._primary_jitter_ticks)

    def enter_view_change(self, prng: Prng) -> None:
        """A further view change while one runs backs its timeout off (duelling candidates drift apart)."""
        escalating = self.view_change.running
        self._stop_all_but(self.view_change)
        self.view_change_resend.start()
        if escalating:
            self.view_change.backoff(prng)
        else:
            self.view_change.start()

    def enter_transitioning(self) -> None:
        self._stop_all_but()

    def enter_recovering(self) -> None:
        self._stop_all_but()
        self.recovery.start()

    def running(self) -> tuple[str, ...]:
        return tuple(timeout.name for timeout in self._all if timeout.running)
