"""The run summary: computed once from every test's result, printed by one hook."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .session import TestResult

_COUNTS = ("recorded", "unchanged", "replayed", "new", "unused", "failed-not-saved", "failed")


@dataclass
class ReplayReport:
    """Counts per mode and a verdict per test."""

    results: list[TestResult]
    counts: dict[str, Counter[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, results: Iterable[TestResult]) -> ReplayReport:
        report = cls(sorted(results, key=lambda r: r.nodeid))
        for r in report.results:
            c = report.counts.setdefault(r.mode, Counter())
            if r.mode == "record" and r.wrote:
                c["recorded"] += 1
            if r.mode == "record" and r.unchanged:
                c["unchanged"] += 1
            replayed = r.verdict in ("HIT", "PARTIAL", "UNUSED")
            if r.mode in ("replay", "strict") and replayed and not r.failed:
                c["replayed"] += 1
            if r.mode == "replay" and r.verdict == "MISS" and r.new and not r.failed:
                c["new"] += 1
            if r.unused:
                c["unused"] += 1
            if r.not_saved:
                c["failed-not-saved"] += 1
            if r.failed:
                c["failed"] += 1
        return report

    def lines(self, verbose: int) -> list[str]:
        out = []
        for mode in sorted(self.counts):
            c = self.counts[mode]
            parts = [f"{c[name]} {name}" for name in _COUNTS if c[name]]
            total = sum(1 for r in self.results if r.mode == mode)
            out.append(f"mode {mode}: {total} test(s) used replay; " + (", ".join(parts) or "-"))
        for r in self.results:
            if r.not_saved:
                kept = "nothing written" if r.new else "old cassette kept"
                out.append(f"NOT SAVED (test failed, {kept}): {r.nodeid}")
        if verbose > 0:
            width = max((len(r.verdict) for r in self.results), default=0)
            out.extend(f"{r.verdict:<{width}} {r.nodeid} -> {r.cassette}" for r in self.results)
        return out
