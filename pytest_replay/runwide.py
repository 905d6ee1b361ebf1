"""Run-wide pytest hooks: --replay-twice.

Registered by plugin.py at configure time; the state lives on its ReplayRun.
"""

from __future__ import annotations

from shlex import quote

import pytest

from .modes import Mode
from .plugin import FORCE_MODE_KEY, RECORDED_KEY, RUN_KEY

# --- --replay-twice: record, then replay what was just recorded ------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run the test; if it recorded its cassette, run it again in strict replay.

    Each pass is pytest's own protocol (fresh function fixtures, a fresh
    ``replay`` session); the reports are merged so the test counts once and
    fails with the second pass's message when the two runs differ.
    """
    run = item.config.stash.get(RUN_KEY, None)
    if run is None or not run.twice:
        return None
    from _pytest.runner import runtestprotocol

    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, nextitem=nextitem, log=False)
    recorded = item.stash.get(RECORDED_KEY, None)
    if recorded is not None:
        del item.stash[RECORDED_KEY]
    if recorded is not None and all(r.passed for r in reports):
        item.stash[FORCE_MODE_KEY] = Mode.STRICT
        try:
            again = runtestprotocol(item, nextitem=nextitem, log=False)
        finally:
            del item.stash[FORCE_MODE_KEY]
        if any(r.failed for r in again):
            # A failing test keeps its old cassette, in this mode too.
            result, snapshot = recorded
            snapshot.restore()
            result.failed = result.not_saved = True
            result.wrote = result.unchanged = result.new = False
        reports = _merge_twice(reports, again)
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


TWICE_FAILED = (
    "replay-twice: replaying the cassette this test had just recorded did not give the same "
    "run, so the test is not deterministic (what it recorded was discarded); what differed:\n"
)
TWICE_FIX = (
    "\n  Fix: take every varying input through replay.fact / now / random_bytes / uuid4 "
    "(or a step), then re-record: pytest --replay=record --replay-twice {test}"
)


def _merge_twice(
    first: list[pytest.TestReport], again: list[pytest.TestReport]
) -> list[pytest.TestReport]:
    """The first pass's reports; a failure of the second lands on its call (or teardown)."""
    failure = next((r for r in again if r.failed and r.when != "teardown"), None)
    teardown = next((r for r in again if r.failed and r.when == "teardown"), None)
    for report in first:
        late = failure if report.when == "call" else teardown if report.when == "teardown" else None
        if late is not None:
            report.outcome = "failed"
            report.longrepr = (
                TWICE_FAILED + late.longreprtext + TWICE_FIX.replace("{test}", quote(report.nodeid))
            )
            report.sections.extend(late.sections)
    return first
