"""What a chaos run found: each fault with its recovery, the workload's outcome, the checks, and the verdict."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FaultRecord:
    kind: str
    target: str
    started_s: float  # on the workload's clock (`Workload.now`)
    healed_s: float
    recovery_s: float | None  # from the heal (or the kill) to the next acknowledged write; None: none came
    outage_s: float | None  # the longest stretch without an acknowledged write, from the fault to the recovery
    view_before_heal: int | None  # the highest view any reachable replica reported just before the heal
    view_after_heal: int | None  # ... and once the cluster had recovered
    measure_from_start: bool
    one_replica: bool

    @property
    def views_by_heal(self) -> int | None:
        """View changes between the heal and the recovery: what healing the fault cost the cluster."""
        if self.view_before_heal is None or self.view_after_heal is None:
            return None
        return self.view_after_heal - self.view_before_heal


@dataclass
class ChaosReport:
    seed: int
    replicas: int
    run_dir: str
    faults: list[FaultRecord] = field(default_factory=list)
    elapsed_s: float = 0.0
    ops_ok: int = 0
    ops_unknown: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # codes of the workload's failed calls
    linearizable: str = "not checked"  # the checker's verdict: ok, illegal, unknown (timed out)
    lost_writes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # violations and liveness failures, one line each

    @property
    def ok(self) -> bool:
        return not self.problems and not self.lost_writes and self.linearizable == "ok"

    def by_kind(self) -> dict[str, list[FaultRecord]]:
        kinds: dict[str, list[FaultRecord]] = {}
        for fault in self.faults:
            kinds.setdefault(fault.kind, []).append(fault)
        return kinds

    def heal_view_changes(self) -> int:
        """View changes that healing a fault of one replica caused (the goal is 0)."""
        return sum(max(0, f.views_by_heal or 0) for f in self.faults if f.one_replica)

    def summary(self) -> str:
        lines = [
            f"{'fault':<20} {'n':>3}  {'recovery median':>15} {'max':>7}  {'outage median':>13} {'max':>7}"
            f"  {'views by heal':>13}"
        ]
        for kind, faults in sorted(self.by_kind().items()):
            recovery = _median_max([f.recovery_s for f in faults])
            outage = _median_max([f.outage_s for f in faults])
            views = sum(max(0, f.views_by_heal or 0) for f in faults)
            lines.append(f"{kind:<20} {len(faults):>3}  {recovery}  {outage}  {views:>13}")
        lines.append("recovery: from the heal (from the kill for kill and wipe) to the next acknowledged write;")
        lines.append("outage: the longest time without an acknowledged write, from the fault to that write")
        lines.append(
            f"ops ok {self.ops_ok}, unknown {self.ops_unknown}; linearizable: {self.linearizable}; "
            f"lost writes: {len(self.lost_writes)}; view changes caused by healing a one-replica fault: "
            f"{self.heal_view_changes()}; {len(self.faults)} faults in {self.elapsed_s:.0f} s"
        )
        lines.extend(f"LOST: {line}" for line in self.lost_writes)
        lines.extend(f"PROBLEM: {line}" for line in self.problems)
        lines.append(("OK" if self.ok else "FAILED") + f" (seed {self.seed}, {self.replicas} replicas)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["ok"] = self.ok
        value["heal_view_changes"] = self.heal_view_changes()
        return value


def _median_max(values: list[float | None]) -> str:
    """The median and the max, in seconds, 15 and 7 wide ("never" as the max when a fault never recovered)."""
    known = [value for value in values if value is not None]
    median = f"{statistics.median(known):.2f} s" if known else "-"
    worst = "never" if len(known) < len(values) else f"{max(known):.2f} s" if known else "-"
    return f"{median:>15} {worst:>7}"
