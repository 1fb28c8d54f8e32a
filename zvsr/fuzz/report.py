"""What a live fuzz run found: per-target send statistics, the checks' results, and the verdict.

Theory of operation
-------------------
`zvsr.fuzz.live` fills a `FuzzReport` as it goes (one `TargetStats` per bound socket it fired at, then the
results of the checks), and `judge` turns the results into `problems`: the run passed only if that list is
empty. The bad-input and decoder-bug counts are read from the nodes' status answers (`zvsr.wire.admin`) by
`bad_input_counts` and `decoder_bug_counts`, which know the counter names the replicas and the proxy use.
`summary` is the human-readable report of `zvsr fuzz`, `to_json` its `--json` form.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TargetStats:
    label: str
    endpoint: str
    sent: int = 0  # multipart messages accepted by libzmq (each one counts as one frame of the budget)
    impersonated: int = 0  # of those, sent with another member's routing id (peer ports)
    bursts: int = 0
    oversized: int = 0  # frames at or beyond the socket's MAXMSGSIZE
    send_timeouts: int = 0
    abandoned: int = 0  # frames of the budget not sent because the target's process died
    answers: int = 0
    unreadable_answers: int = 0
    unreadable_examples: list[str] = field(default_factory=list)
    strategies: Counter[str] = field(default_factory=Counter)
    failure: str | None = None  # the sender thread itself failed (our bug, reported as a problem)
    elapsed_s: float = 0.0


@dataclass
class FuzzReport:
    frames: int
    seed: int
    replicas: int
    elapsed_s: float = 0.0
    fuzz_elapsed_s: float = 0.0
    fuzz_started_s: float = 0.0  # when the fuzz started, in seconds after the run started
    targets: list[TargetStats] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    serves: bool = False
    serve_problem: str | None = None
    acknowledged_ops: int = 0
    acknowledged_during_fuzz: int = 0
    workload_errors: dict[str, int] = field(default_factory=dict)
    lost_writes: list[str] = field(default_factory=list)
    writes_checked: bool = False
    linearizable: str = "not checked"  # "ok", "illegal", "unknown"
    linearizability_summary: str = ""
    bad_input_before: dict[str, dict[str, int]] = field(default_factory=dict)
    bad_input_after: dict[str, dict[str, int]] = field(default_factory=dict)
    decoder_bugs: dict[str, dict[str, int]] = field(default_factory=dict)
    log_problems: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def sent(self) -> int:
        return sum(t.sent for t in self.targets)

    def summary(self) -> str:
        rate = self.sent / self.fuzz_elapsed_s if self.fuzz_elapsed_s else 0.0
        lines = [
            f"zvsr fuzz: {self.sent} frames sent (budget {self.frames}), seed {self.seed}, "
            f"{self.replicas} replicas, {self.elapsed_s:.1f} s in all, fuzzing {self.fuzz_elapsed_s:.1f} s "
            f"from +{self.fuzz_started_s:.1f} s ({rate:,.0f} frames/s)",
            "frames sent per target:",
        ]
        for t in self.targets:
            extra = []
            if t.impersonated:
                extra.append(f"{t.impersonated} impersonating a member in {t.bursts} bursts")
            if t.oversized:
                extra.append(f"{t.oversized} at/over MAXMSGSIZE")
            if t.answers:
                extra.append(f"{t.answers} answers, {t.unreadable_answers} unreadable")
            if t.send_timeouts:
                extra.append(f"{t.send_timeouts} send timeouts")
            if t.abandoned:
                extra.append(f"{t.abandoned} not sent: the target died")
            if t.failure:
                extra.append(f"SENDER FAILED: {t.failure}")
            lines.append(f"  {t.label:<10} {t.sent:>9}  {t.endpoint}  {'; '.join(extra)}")
        lines.append(f"crashes: {len(self.crashes)}" + (f" ({'; '.join(self.crashes)})" if self.crashes else ""))
        lost = len(self.lost_writes) if self.writes_checked else "not checked (cluster unreadable)"
        lines.append(
            f"lost writes: {lost} (acknowledged ops {self.acknowledged_ops}, "
            f"{self.acknowledged_during_fuzz} while fuzzing; workload errors {dict(self.workload_errors) or 0})"
        )
        for problem in self.lost_writes[:10]:
            lines.append(f"  {problem}")
        verdict = {"ok": "yes", "illegal": "NO"}.get(self.linearizable, self.linearizable)
        lines.append(f"linearizable: {verdict} ({self.linearizability_summary})")
        serves = "yes" if self.serves else f"NO: {self.serve_problem}"
        lines.append(f"cluster serves after the fuzz: {serves}")
        lines.append("bad-input counters (before -> after):")
        for name in sorted(self.bad_input_after):
            before, after = self.bad_input_before.get(name, {}), self.bad_input_after[name]
            parts = [f"{side} {before.get(side, 0)} -> {after[side]}" for side in sorted(after)]
            lines.append(f"  {name:<6} {', '.join(parts)}")
        bugs = {name: counts for name, counts in self.decoder_bugs.items() if counts}
        lines.append(f"decoder failures outside the contract ('our bug' counters): {bugs or 0}")
        if self.log_problems:
            lines.append(f"log lines that point at a bug: {len(self.log_problems)}")
            lines.extend(f"  {line}" for line in self.log_problems[:10])
        strategies: Counter[str] = Counter()
        for t in self.targets:
            strategies.update(t.strategies)
        lines.append("payload strategies: " + ", ".join(f"{k} {v}" for k, v in strategies.most_common()))
        lines.append("result: " + ("PASS" if self.ok else "FAIL: " + "; ".join(self.problems)))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "frames": self.frames,
            "sent": self.sent,
            "seed": self.seed,
            "replicas": self.replicas,
            "elapsed_s": round(self.elapsed_s, 3),
            "fuzz_elapsed_s": round(self.fuzz_elapsed_s, 3),
            "targets": [
                {
                    "label": t.label,
                    "endpoint": t.endpoint,
                    "sent": t.sent,
                    "impersonated": t.impersonated,
                    "bursts": t.bursts,
                    "oversized": t.oversized,
                    "send_timeouts": t.send_timeouts,
                    "abandoned": t.abandoned,
                    "answers": t.answers,
                    "unreadable_answers": t.unreadable_answers,
                    "unreadable_examples": t.unreadable_examples,
                    "failure": t.failure,
                    "strategies": dict(t.strategies),
                }
                for t in self.targets
            ],
            "crashes": self.crashes,
            "serves": self.serves,
            "acknowledged_ops": self.acknowledged_ops,
            "acknowledged_during_fuzz": self.acknowledged_during_fuzz,
            "workload_errors": self.workload_errors,
            "lost_writes": self.lost_writes,
            "writes_checked": self.writes_checked,
            "linearizable": self.linearizable,
            "linearizability_summary": self.linearizability_summary,
            "bad_input_before": self.bad_input_before,
            "bad_input_after": self.bad_input_after,
            "decoder_bugs": self.decoder_bugs,
            "log_problems": self.log_problems,
            "problems": self.problems,
        }


def bad_input_counts(answer: dict[str, Any] | None) -> dict[str, int]:
    """From a status answer: bad input counted on each side (replica: peer, client; proxy: frontend)."""
    counters: dict[str, int] = {} if answer is None else dict(answer.get("counters") or {})
    if answer is not None and answer.get("role") == "proxy":
        return {"frontend": sum(v for k, v in counters.items() if str(k).startswith("bad request: "))}
    peer = sum(
        v
        for k, v in counters.items()
        if str(k).startswith("peer: ") or k == "on_message: other cluster"
    )
    client = sum(
        v for k, v in counters.items() if str(k).startswith(("client: bad envelope", "client: decode error"))
    )
    return {"peer": peer, "client": client}


def decoder_bug_counts(answer: dict[str, Any] | None) -> dict[str, int]:
    """Counters a node keeps when a decoder raised something other than DecodeError (`(our bug)`)."""
    counters: dict[str, int] = {} if answer is None else dict(answer.get("counters") or {})
    return {str(k): v for k, v in counters.items() if "our bug" in str(k)}


def judge(report: FuzzReport, *, grew: bool, workload: bool) -> None:
    """Add to `report.problems` every check the run failed (`grew`: every bad-input counter grew; `workload`:
    a workload ran, so lost writes and linearizability count)."""
    problems = report.problems
    if report.sent < report.frames:
        problems.append(f"only {report.sent} of {report.frames} frames were sent")
    for t in report.targets:
        if t.failure:
            problems.append(f"the sender for {t.label} failed: {t.failure}")
        if t.unreadable_answers:
            problems.append(f"{t.unreadable_answers} unreadable answers from {t.label}: {t.unreadable_examples}")
    if report.crashes:
        problems.append(f"crashes: {report.crashes}")
    if not report.serves:
        problems.append(f"the cluster does not serve after the fuzz: {report.serve_problem}")
    if workload:
        if report.lost_writes:
            problems.append(f"{len(report.lost_writes)} acknowledged writes lost")
        if report.linearizable != "ok":
            problems.append(f"history not linearizable: {report.linearizability_summary}")
    if not grew:
        problems.append("the bad-input counters did not all grow")
    bugs = {name: counts for name, counts in report.decoder_bugs.items() if counts}
    if bugs:
        problems.append(f"decoders failed outside their contract: {bugs}")
    if report.log_problems:
        problems.append(f"{len(report.log_problems)} log lines point at a bug")
