"""The run summary (computed once from every test's result), and what xfail may excuse."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ReplayError
from .session import TestResult

_COUNTS = (
    "recorded",
    "unchanged",
    "replayed",
    "verified",
    "new",
    "xfailed",
    "unused",
    "failed-not-saved",
    "failed",
)


# Replay errors an xfail never excuses. They say the recording is missing,
# incomplete, unreadable or could not be written (or the replay settings are
# wrong), not that the code under test failed as the marker expects; excused,
# strict would never check the test.
UNEXCUSED_KINDS = frozenset(
    {
        "replay_missing_cassette",
        "replay_missing_fact",
        "replay_missing_http",
        "replay_missing_step",
        "replay_record",
        "replay_cassette",
        "replay_ring_log",
        "replay_config",
        "replay_conflict",
    }
)

# Where a fetch the cassette records runs: a failure raised through these
# frames left nothing recorded for that fetch (facts, steps, tools, vcrpy).
_RECORDED_CALL_MODULES = ("pytest_replay.", "vcr.")


def unexcused_error(
    errors: Iterable[BaseException | None], *, every_kind: bool = False
) -> ReplayError | None:
    """The first of ``errors`` that an xfail must not excuse, or None.

    ``every_kind``: any replay error (the second pass of --replay-twice, where
    a difference from the run just recorded is non-determinism, never expected).
    """
    for err in errors:
        if isinstance(err, ReplayError) and (every_kind or err.kind in UNEXCUSED_KINDS):
            return err
    return None


def raised_in_recorded_call(exc: BaseException | None, test_code: object) -> bool:
    """``exc`` came out of a fetch the cassette records, called by the test's body.

    Such a fetch recorded nothing (its function raised), so a replay cannot
    reach the same failure: the recording of an xfailed test is incomplete.
    """
    tb = exc.__traceback__ if exc is not None else None
    in_test = False
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is test_code:
            in_test = True
        elif in_test and str(frame.f_globals.get("__name__", "")).startswith(
            _RECORDED_CALL_MODULES
        ):
            return True
        tb = tb.tb_next
    return False


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
            if r.mode in ("replay", "strict", "replay-twice") and replayed and not r.failed:
                c["replayed"] += 1
            if r.mode == "verify" and r.verdict in ("VERIFIED", "UNUSED") and not r.failed:
                c["verified"] += 1
            if r.mode == "replay" and r.verdict == "MISS" and r.new and not r.failed:
                c["new"] += 1
            if r.xfailed:
                c["xfailed"] += 1
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
                why = "xfailed, recording incomplete" if r.xfailed else "test failed"
                out.append(f"NOT SAVED ({why}, {kept}): {r.nodeid}")
        out.extend(self._warnings())
        if verbose > 0:
            width = max((len(r.verdict) for r in self.results), default=0)
            out.extend(f"{r.verdict:<{width}} {r.nodeid} -> {r.cassette}" for r in self.results)
        return out

    def _warnings(self) -> list[str]:
        """Facts worth a line that never fail a test by themselves."""
        out = []
        envs: dict[str, list[str]] = {}
        owners: dict[str, set[str]] = {}
        for r in self.results:
            if r.env_diff:
                envs.setdefault(r.env_diff, []).append(r.nodeid)
            owners.setdefault(r.cassette, set()).add(r.nodeid)
        for diff, tests in sorted(envs.items()):
            out.append(
                f"WARNING environment differs from the recording ({diff}) "
                f"for {len(tests)} test(s), e.g. {tests[0]}"
            )
        for cassette, tests in sorted(owners.items()):
            if len(tests) > 1:  # only xdist gets here: one process refuses the second test
                out.append(
                    f"WARNING {cassette} is used by {len(tests)} tests on different workers "
                    f"({', '.join(sorted(tests))}); give each its own name: "
                    "@pytest.mark.replay(cassette='...')"
                )
        return out
