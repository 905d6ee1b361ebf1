"""Run-wide pytest hooks: --replay-twice, the unused report, and merging xdist workers.

Registered by plugin.py at configure time; the state lives on its ReplayRun.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator
from typing import Any

import pytest

from . import ambient, twice
from .cassette import display_path
from .modes import Mode
from .plugin import FORCE_MODE_KEY, RECORDED_KEY, RUN_KEY
from .session import TestResult
from .usage import WORKER_KEY, Child, UnusedReport, Usage, find_unused, git_head

NOT_CHECKED_SHOWN = 10
BLOBS_NOT_CHECKED = (
    "a pytest_replay_cassette_path hook may keep cassettes outside the cassette "
    "directories, so no blob is listed"
)


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
            # A failing test keeps its old cassette, in this mode too. The failure
            # is counted once, by the second pass's result (mode replay-twice).
            result, snapshot = recorded
            snapshot.restore()
            result.not_saved = True
            result.wrote = result.unchanged = False
            result.new = snapshot.old is None  # the summary says "nothing written"
        reports = _merge_twice(reports, again)
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


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
            report.longrepr = twice.failure_text(late.longreprtext, report.nodeid)
            report.sections.extend(late.sections)
    return first


# --- run-wide: the unused report, xdist workers ------------------------------------------


# trylast: inside other wrappers, so the items --lf filters out of a module are seen
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    report = yield
    run = collector.config.stash.get(RUN_KEY, None)
    if run is not None and run.report_unused:
        children = report.result if report.passed else []
        run.usage.collected(
            report.nodeid,
            _path(collector),
            report.passed,
            "its collection failed" if report.failed else "it was skipped at collection",
            [Child(n.nodeid, _path(n), isinstance(n, pytest.Item)) for n in children],
        )
    return report


def pytest_collection_finish(session: pytest.Session) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is not None and run.report_unused:
        run.usage.selected(
            Child(i.nodeid, _path(i), True, _uses_replay(i, run.ini_settings))
            for i in session.items
        )
        # after collection, so conftest.py files below the rootdir are loaded
        run.usage.path_hook = bool(session.config.hook.pytest_replay_cassette_path.get_hookimpls())


def _uses_replay(item: pytest.Item, ini_settings: dict[str, Any]) -> bool:
    """The ``replay`` fixture, or clock/random/uuid turned on by the ini or a marker."""
    if "replay" in getattr(item, "fixturenames", ()):
        return True
    marks = [mark.kwargs for mark in reversed(list(item.iter_markers("replay")))]
    return ambient.wanted(ini_settings, *marks)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test whose body ran (and did not skip) used replay only if it reached its session.

    In the second pass of --replay-twice, replay errors lose their own Fix line first.
    """
    if call.excinfo is not None and item.stash.get(FORCE_MODE_KEY, None) is not None:
        twice.drop_fixes(call.excinfo.value)  # before the report renders the error
    report = yield
    if report.when == "call" and (not report.skipped or hasattr(report, "wasxfail")):
        run = item.config.stash.get(RUN_KEY, None)
        if run is not None and run.report_unused:
            run.usage.ran.add(item.nodeid)
    return report


def _path(node: pytest.Node) -> str | None:
    path = getattr(node, "path", None)
    return os.path.normpath(path) if path is not None else None


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: keep what each worker sent (results always, usage when asked)."""
    run = node.config.stash.get(RUN_KEY, None)
    if run is None or id(node) in run.workers_seen:  # xdist may report a node down twice
        return
    run.workers_seen.add(id(node))
    data = (getattr(node, "workeroutput", None) or {}).get(WORKER_KEY)
    if data is None:
        name = getattr(getattr(node, "gateway", None), "id", "?")
        run.workers_lost.append(f"worker {name} went down before it reported")
        return
    run.worker_results.extend(TestResult(**r) for r in data["results"])
    if "usage" in data:
        run.worker_usage.append(Usage.from_dict(data["usage"]))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return
    if session.shouldstop or session.shouldfail or exitstatus == pytest.ExitCode.INTERRUPTED:
        run.usage.run_problems.append("the run stopped early")
    if config.option.collectonly:
        run.usage.run_problems.append("the run only collected tests (--collect-only)")
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports
        data: dict[str, Any] = {"results": [dataclasses.asdict(r) for r in run.results]}
        if run.report_unused:
            data["usage"] = run.usage.to_dict()
        workeroutput[WORKER_KEY] = data
        return
    if config.pluginmanager.getplugin("dsession") is not None:  # the xdist controller
        run.results.extend(run.worker_results)
        usage = Usage.merge([run.usage, *run.worker_usage])
        usage.run_problems.extend(run.workers_lost)
    else:
        usage = run.usage
    if run.report_unused:
        run.unused = find_unused(usage, run.rootdir, run.replay_dir)
        run.unused.git_head = git_head(run.rootdir)  # prune refuses it at another commit
        try:
            run.unused.write(run.unused_path)
        except OSError as exc:
            run.unused.problems.append(f"could not write {run.unused_path}: {exc}")


@pytest.hookimpl(trylast=True)  # after plugin.py's summary, in the same section
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None or run.unused is None:
        return
    if not run.results:
        terminalreporter.section("pytest_replay")
    for line in unused_lines(run.unused, display_path(run.unused_path, run.rootdir)):
        terminalreporter.line(line)


def unused_lines(report: UnusedReport, shown: str) -> list[str]:
    """The summary of --replay-report-unused: every file, then what was not checked."""
    files = report.files
    out = [
        f"unused files: {len(report.cassettes)} cassette(s), {len(report.sidecars)} ring log(s), "
        f"{len(report.blobs)} blob(s) in {report.checked} module(s) checked; written to {shown}"
    ]
    out.extend(f"  {path}" for path in files)
    skipped = sorted(report.not_checked.items())
    out.extend(f"not checked: {module} ({why})" for module, why in skipped[:NOT_CHECKED_SHOWN])
    if len(skipped) > NOT_CHECKED_SHOWN:
        out.append(f"not checked: and {len(skipped) - NOT_CHECKED_SHOWN} more module(s)")
    out.extend(f"not checked: {problem}" for problem in report.problems)
    if not report.blobs_checked:
        out.append(f"blobs not checked: {BLOBS_NOT_CHECKED}")
    if files:
        how = "pytest-replay prune --dry-run, then pytest-replay prune"
        if report.partial:
            how += " --allow-partial (this run did not check every module)"
        out.append(f"Fix: to delete them: {how}")
    return out
