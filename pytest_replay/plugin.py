"""pytest hooks only: options, markers, fixtures, the end-of-test check and the summary."""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from . import ambient, hookspecs
from .blobs import BlobStore
from .cassette import cassette_path, cassette_root, display_path
from .config import DEFAULT_BLOB_THRESHOLD, merge_settings
from .diffs import DiffStore
from .errors import ConfigError, PluginConflict, ReplayError, UnusedItems
from .modes import MODES, Mode, effective_mode, resolve_mode
from .report import ReplayReport, raised_in_recorded_call, unexcused_error
from .session import ReplaySession, TestResult
from .twice import Snapshot
from .usage import REPORT_FILE, UnusedReport, Usage

SESSION_KEY = pytest.StashKey[ReplaySession]()
RUN_KEY = pytest.StashKey["ReplayRun"]()
# --replay-twice: what the first pass recorded, and the files it replaced
RECORDED_KEY = pytest.StashKey[tuple[TestResult, Snapshot]]()
FORCE_MODE_KEY = pytest.StashKey[Mode]()  # the second pass of --replay-twice replays strict
# A test's result until its call report says whether an xfail excused it; the
# snapshot (xfail tests only) lets an XPASS(strict) put back what it recorded.
OUTCOME_KEY = pytest.StashKey[tuple[ReplaySession, TestResult, Snapshot | None]]()
# How many replay errors the test function raised (and caught) before it returned;
# None when it raised. What failed the test after that came from the end-of-test checks.
BODY_RETURNED_KEY = pytest.StashKey[int | None]()
TWICE_LABEL = "replay-twice"  # the mode its results are counted under
ESSS_DIST = "pytest-replay"


class ReplayRun:
    """Run-wide state: the mode, where things live, and every test's result."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rootdir = config.rootpath
        retryable = _bool_ini(config, "replay_missing_fact_retryable")
        try:
            self.mode = resolve_mode(
                config.getoption("replay_mode"), os.environ, config.getini("replay_mode")
            )
        except ConfigError as err:
            raise pytest.UsageError(err.render()) from None
        replay_dir = config.getoption("replay_dir") or config.getini("replay_dir")
        self.replay_dir = (self.rootdir / replay_dir).resolve() if replay_dir else None
        cache_dir = _cache_dir(config)
        self.unused_path = cache_dir / "replay" / REPORT_FILE
        self.twice = bool(config.getoption("replay_twice"))
        if self.twice and self.mode not in (Mode.RECORD, Mode.REPLAY):
            raise pytest.UsageError(
                f"--replay-twice checks what a test records, but --replay={self.mode.value} "
                "never records\n  Fix: pytest --replay=record --replay-twice"
            )
        self.report_unused = bool(config.getoption("replay_report_unused"))
        self.usage = Usage()
        self.worker_results: list[TestResult] = []
        self.worker_usage: list[Usage] = []
        self.workers_lost: list[str] = []
        self.workers_seen: set[int] = set()
        self.unused: UnusedReport | None = None
        self.diffs = DiffStore(
            cache_dir / "replay" / "diffs",
            display_path(cache_dir / "replay" / "diffs", self.rootdir),
        )
        self.ini_settings: dict[str, Any] = {
            "missing_fact_retryable": retryable,
            "blob_threshold": _int_ini(config, "replay_blob_threshold", DEFAULT_BLOB_THRESHOLD),
            "allow_hosts": _allow_hosts(config),
        }
        try:
            self.ini_settings.update(ambient.parse_ini(config.getini("replay_ambient")))
        except ConfigError as err:
            raise pytest.UsageError(err.render()) from None
        self.results: list[TestResult] = []
        self.claimed: dict[Path, str] = {}  # cassette path -> the test that uses it

    def session_for(self, item: pytest.Item, fixture_config: Mapping[str, Any]) -> ReplaySession:
        marker: dict[str, Any] = {}
        for mark in reversed(list(item.iter_markers("replay"))):  # closest wins
            if mark.args:
                raise ConfigError(
                    "@pytest.mark.replay takes keyword arguments only",
                    test=item.nodeid,
                    fix="write @pytest.mark.replay(mode='record'), not positional values",
                )
            marker.update(mark.kwargs)
        settings = merge_settings(self.ini_settings, fixture_config, marker)
        mode = item.stash.get(FORCE_MODE_KEY, None) or effective_mode(
            self.mode, settings.get("mode"), source="mode in the replay marker or replay_config"
        )
        parts = [n.name for n in item.listchain() if isinstance(n, pytest.Class)] + [item.name]
        module = Path(str(item.path))
        default = cassette_path(
            module_path=module,
            rootdir=self.rootdir,
            test_parts=parts,
            replay_dir=self.replay_dir,
            name_override=settings.get("cassette"),
        )
        path = Path(
            item.config.hook.pytest_replay_cassette_path(item=item, default=default) or default
        )
        shown = display_path(path, self.rootdir)
        self.usage.use(item.nodeid, path)
        owner = self.claimed.setdefault(Path(os.path.abspath(path)), item.nodeid)
        if owner != item.nodeid:
            raise ConfigError(
                f"this test's cassette is already used by {owner} in this run",
                cassette=shown,
                details=["two tests sharing a cassette would overwrite and replay each other"],
                fix="give one of them its own name: @pytest.mark.replay(cassette='...')",
            )
        blob_root = cassette_root(module, self.rootdir, self.replay_dir) / ".blobs"
        return ReplaySession(
            nodeid=item.nodeid,
            mode=mode,
            cassette_path=path,
            shown=shown,
            blobs=BlobStore(blob_root, display_path(blob_root, self.rootdir)),
            diffs=self.diffs,
            settings=settings,
            threshold=settings.get("blob_threshold", DEFAULT_BLOB_THRESHOLD),
            hook=item.config.hook,
        )


def _cache_dir(config: pytest.Config) -> Path:
    try:
        raw = config.getini("cache_dir")
    except ValueError:  # cacheprovider disabled
        raw = ".pytest_cache"
    path = Path(os.path.expanduser(os.path.expandvars(str(raw))))
    return path if path.is_absolute() else config.rootpath / path


def _allow_hosts(config: pytest.Config) -> tuple[str, ...]:
    from .http.network import allowed_hosts

    try:
        return allowed_hosts(
            config.getini("replay_allow_hosts"), config.getoption("replay_allow_hosts") or []
        )
    except ConfigError as err:
        raise pytest.UsageError(err.render()) from None


def _int_ini(config: pytest.Config, name: str, default: int) -> int:
    """A whole number >= 0 from the ini (a byte count)."""
    raw = config.getini(name)
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError:
        value = -1
    if value < 0:
        raise pytest.UsageError(_ini_error(name, raw, "a byte count >= 0", f"{name} = {default}"))
    return value


def _bool_ini(config: pytest.Config, name: str) -> bool:
    try:
        return bool(config.getini(name))
    # pytest's "invalid truth value 'maybe'": a ValueError before 9.2, a UsageError since.
    except (ValueError, pytest.UsageError) as exc:
        raw = str(exc).rpartition("value ")[2].strip("'\"") or str(exc)
        raise pytest.UsageError(_ini_error(name, raw, "true or false", f"{name} = true")) from None


def _ini_error(name: str, raw: object, expected: str, example: str) -> str:
    return (
        f"replay_config: ini option {name} must be {expected}, got {raw!r}\n"
        f"  Fix: set it in the [pytest] section of your ini file, e.g. {example}"
    )


# --- start-up ---------------------------------------------------------------------


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def _conflict_message(how: str) -> str:
    return PluginConflict(
        f"two plugins claim --replay: pytest-replay-cassettes (pytest_replay) and {how}",
        details=[
            "they cannot be used in the same pytest run; note that '-p no:replay' would "
            "block both, since pytest also blocks 'pytest_replay' for it"
        ],
        fix="pip uninstall pytest-replay  (ESSS's plugin), then reinstall "
        "pytest-replay-cassettes (both ship a top-level pytest_replay package); or, for "
        "one run: PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 pytest -p pytest_replay.plugin",
    ).render()


def _esss_plugin_active(pluginmanager: pytest.PytestPluginManager) -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    for ep in metadata.entry_points(group="pytest11"):
        dist = getattr(ep, "dist", None)
        name = (dist.metadata["Name"] or "").lower() if dist is not None else ""
        if name == ESSS_DIST and not pluginmanager.is_blocked(ep.name):
            return True
    return False


def _option_taken(parser: pytest.Parser, opt: str) -> bool:
    # pytest keeps no public list of registered options; look, but never fail.
    groups = [getattr(parser, "_anonymous", None), *getattr(parser, "_groups", [])]
    for group in groups:
        for option in getattr(group, "options", []):
            if opt in option.names():
                return True
    return False


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # Detect ESSS's plugin by its installed entry point (whichever registers
    # first), so the user sees one message instead of an argparse traceback.
    if _esss_plugin_active(pluginmanager):
        raise pytest.UsageError(_conflict_message("ESSS's pytest-replay (entry point 'replay')"))
    if _option_taken(parser, "--replay"):
        raise pytest.UsageError(_conflict_message("another plugin that registered --replay"))
    group = parser.getgroup("replay", "record/replay cassettes (pytest_replay)")
    group.addoption(
        "--replay",
        dest="replay_mode",
        metavar="MODE",
        default=None,
        help=f"record/replay mode: {', '.join(MODES)} (default: replay; "
        "env PYTEST_REPLAY_MODE, ini replay_mode)",
    )
    group.addoption(
        "--replay-dir",
        dest="replay_dir",
        metavar="DIR",
        default=None,
        help="keep all cassettes under DIR, mirroring module paths (ini replay_dir)",
    )
    group.addoption(
        "--replay-twice",
        dest="replay_twice",
        action="store_true",
        default=False,
        help="after a test records its cassette, run it again replaying that cassette "
        "(strict) and fail it if it does not behave the same: catches non-determinism",
    )
    group.addoption(
        "--replay-report-unused",
        dest="replay_report_unused",
        action="store_true",
        default=False,
        help="list cassettes, ring logs and blobs no test used (in modules that ran whole) "
        "and write them for 'pytest-replay prune'",
    )
    group.addoption(
        "--replay-allow-hosts",
        dest="replay_allow_hosts",
        metavar="HOSTS",
        action="append",
        default=None,
        help="hosts strict mode lets tests connect to besides loopback, comma-separated "
        "(ini replay_allow_hosts)",
    )
    parser.addini("replay_mode", "default record/replay mode", default="")
    parser.addini(
        "replay_allow_hosts",
        "hosts strict mode lets tests connect to besides loopback",
        type="args",
        default=[],
    )
    parser.addini("replay_dir", "directory for all cassettes (default: next to each module)")
    parser.addini(
        "replay_missing_fact_retryable",
        "in replay mode, fetch a missing fact live and append it instead of failing",
        type="bool",
        default=False,
    )
    parser.addini(
        "replay_ambient",
        "patch for every test: clock (or clock=tick, clock=<seconds per read>), random, uuid",
        type="args",
        default=[],
    )
    parser.addini(
        "replay_blob_threshold",
        "payloads larger than this many bytes go to the .blobs store",
        default=str(DEFAULT_BLOB_THRESHOLD),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "replay(**overrides): per-test replay settings (mode, cassette, "
        "missing_fact_retryable, blob_threshold, clock, random, uuid, http, match_on, "
        "redact, allow_hosts...); a marked test gets the replay session without asking "
        "for the fixture",
    )
    config.addinivalue_line(
        "markers", "gpu: needs CuPy and a visible CUDA device (skipped with a reason otherwise)"
    )
    config.stash[RUN_KEY] = ReplayRun(config)
    from . import runwide  # --replay-twice, the unused report, xdist workers

    config.pluginmanager.register(runwide, "pytest_replay.runwide")


def pytest_report_header(config: pytest.Config) -> str | None:
    run = config.stash.get(RUN_KEY, None)
    return f"replay: mode={run.mode.value}" if run is not None else None


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture
def replay_config() -> dict[str, Any]:
    """Per-directory replay settings: override in a conftest.py, at any scope."""
    return {}


@pytest.fixture
def replay(
    request: pytest.FixtureRequest, replay_config: Mapping[str, Any]
) -> Generator[ReplaySession, None, None]:
    """This test's record/replay session (facts, clock, randomness, HTTP)."""
    run = request.config.stash[RUN_KEY]
    item = request.node
    try:
        session = run.session_for(item, replay_config)
    except ReplayError as err:
        err.with_context(test=item.nodeid)
        err.terse = True  # type: ignore[attr-defined]
        raise err from None
    item.stash[SESSION_KEY] = session
    try:
        yield session
    finally:
        # HTTP stubs, the strict network block and ambient patches end with the
        # test, also when it never reached its body (setup failed).
        session.close()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test with @pytest.mark.replay, or any test when the ini turns ambient
    # patches on, gets its replay session (HTTP recording, clock...) without
    # asking for the fixture. Decided here, once per test, so other tests run
    # no fixture of ours at all.
    _skip_gpu_tests_without_a_device(items)
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return
    by_ini = ambient.wanted(run.ini_settings)
    for item in items:
        names = getattr(item, "fixturenames", None)
        if names is None or "replay" in names:
            continue
        if by_ini or item.get_closest_marker("replay") is not None:
            # A new list: parametrized items share one closure list.
            item.fixturenames = [*names, "replay"]  # type: ignore[attr-defined]


def _skip_gpu_tests_without_a_device(items: list[pytest.Item]) -> None:
    """A skip mark, so -rs points at the test rather than at this plugin.

    Runs after -m/-k deselection (trylast), so CuPy is only probed when a
    gpu test is still selected.
    """
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    from .ring.backend import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is not None:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


# --- around the test body ---------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    session = _pop_session(item)
    results = item.config.stash[RUN_KEY].results
    # The second pass of --replay-twice is counted apart from the recording.
    label = TWICE_LABEL if item.stash.get(FORCE_MODE_KEY, None) is not None else None
    snapshot = None
    item.stash[BODY_RETURNED_KEY] = None  # --replay-twice runs an item twice
    try:
        if session is not None:
            _terse(session.before_call)
        outcome = yield
        item.stash[BODY_RETURNED_KEY] = len(session.raised) if session is not None else 0
        if session is None:
            # The body may have asked for it: request.getfixturevalue("replay").
            session = _pop_session(item)
            if session is None:
                return outcome
            _terse(session.before_call)
        if label is None and session.mode is Mode.RECORD and item.config.stash[RUN_KEY].twice:
            snapshot = Snapshot.take(session.cassette)
        # Only xfail tests pay for this: an XPASS(strict) is a failure, and a failing
        # test keeps its old cassette.
        marked = session.should_save() and item.get_closest_marker("xfail") is not None
        before = snapshot or (Snapshot.take(session.cassette) if marked else None)
        result = _terse(session.after_call)
    except pytest.skip.Exception:
        session = session or _pop_session(item)
        if session is not None:
            results.append(_labelled(session.failed_result(skipped=True), label))
        raise
    except BaseException:
        session = session or _pop_session(item)
        if session is not None:
            result = _labelled(session.failed_result(), label)
            results.append(result)
            item.stash[OUTCOME_KEY] = (session, result, None)
        raise
    results.append(_labelled(result, label))
    item.stash[OUTCOME_KEY] = (session, result, before)
    if snapshot is not None and (result.wrote or result.unchanged):
        item.stash[RECORDED_KEY] = (result, snapshot)
    return outcome


def _pop_session(item: pytest.Item) -> ReplaySession | None:
    session = item.stash.get(SESSION_KEY, None)
    if session is not None:
        del item.stash[SESSION_KEY]
    return session


def _labelled(result: TestResult, label: str | None) -> TestResult:
    if label is not None:
        result.mode = label
    return result


def _terse(fn: Any) -> Any:
    """Run an end-of-test check; its failure shows as text, not our traceback."""
    try:
        return fn()
    except ReplayError as err:
        err.terse = True  # type: ignore[attr-defined]
        raise


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, Any]:
    # pytest-randomly reseeds random/NumPy just before the body; seed them again
    # from the test's recorded seed so random=True still replays.
    if ambient.ACTIVE and pyfuncitem.config.pluginmanager.hasplugin("randomly"):
        ambient.reseed("call")
    return (yield)


# tryfirst: the outermost wrapper, so it sees the report after pytest's skipping
# plugin (a wrapper too) has turned an expected failure into "xfailed".
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    exc = call.excinfo.value if call.excinfo is not None else None
    outcome = item.stash.get(OUTCOME_KEY, None) if call.when == "call" else None
    if outcome is not None:
        del item.stash[OUTCOME_KEY]
    # An xfail test failed by its replay error already shows that error.
    settled = _settle_xfail(item, report, exc, outcome)
    terse = isinstance(exc, ReplayError) and getattr(exc, "terse", False)
    if terse and report.failed and not settled:
        report.longrepr = exc.render()
    return report


def _settle_xfail(
    item: pytest.Item,
    report: pytest.TestReport,
    exc: BaseException | None,
    outcome: tuple[ReplaySession, TestResult, Snapshot | None] | None,
) -> bool:
    """Square the test's replay result with pytest's xfail verdict on it; True when
    an xfailed test was failed (its report then shows the replay error).
    """
    session, result, snapshot = outcome if outcome is not None else (None, None, None)
    returned = item.stash.get(BODY_RETURNED_KEY, None) if report.when == "call" else None
    if report.skipped and hasattr(report, "wasxfail"):  # xfailed
        caught = session.raised if session is not None else []
        second_pass = item.stash.get(FORCE_MODE_KEY, None) is not None  # --replay-twice
        err = unexcused_error([exc, *caught], every_kind=second_pass)
        if err is not None:
            # Not the failure the marker expects: the test fails with the replay error.
            if err is not exc:
                err.details.append("(this error was raised during the test and caught by the code)")
            err.details.append(
                "(not excused by xfail: it is about the recording, not the code under test)"
            )
        elif session is not None and result is not None and result.failed and result.unused:
            err = _unused_not_excused(session, exc, returned)
        if err is None and session is not None and result is not None and result.failed:
            # A failure out of a recorded fetch (a fact's function, a step, an
            # HTTP call) left that fetch unrecorded: a replay could not reach it.
            code = getattr(getattr(item, "function", None), "__code__", None)
            complete = not raised_in_recorded_call(exc, code)
            try:
                session.expected_failure(result, complete=complete)  # saved when recording
            except ReplayError as save_err:
                err = save_err
        if err is not None:
            report.outcome = "failed"
            del report.wasxfail
            report.longrepr = err.render()
            return True
    elif report.failed and result is not None and not result.failed:
        # The body passed but pytest fails the test: XPASS(strict). A failing test
        # keeps its old cassette, so what the passing body saved is put back.
        result.failed = True
        if snapshot is not None and (result.wrote or result.unchanged):
            if result.wrote:
                snapshot.restore()
            result.not_saved = True
            result.wrote = result.unchanged = False
            result.new = snapshot.old is None
    return False


def _unused_not_excused(
    session: ReplaySession, exc: BaseException | None, returned: int | None
) -> ReplayError | None:
    """strict: an xfail test that left recorded items unused no longer fails where it
    was recorded (it was recorded up to its expected failure); the error, or None.

    ``returned`` is None when the body raised, else how many replay errors it
    raised (and the code caught) before it returned.
    """
    stopped_by_check = _replay_check_in(exc, session.raised) if returned is None else returned > 0
    if stopped_by_check:
        # A replay check (a drift, an array diff) stopped the body, propagated,
        # wrapped or caught by the code: the marker may be there for it.
        return None
    if returned is None:
        err = session.unused_error()
        if err is None:
            return None
        if exc is not None:
            first = (str(exc).splitlines() or [""])[0][:200]
            err.details.append(f"the test failed with {type(exc).__name__}: {first}")
        note = (
            "the test failed before it reached all it recorded, "
            "so it no longer fails where it was recorded"
        )
    else:
        # The body returned; what failed the test came from the end-of-test checks.
        err = exc if isinstance(exc, UnusedItems) else session.unused_error()
        if err is None:
            return None
        if isinstance(exc, ReplayError) and exc is not err:
            check = f"{exc.kind}: {exc.summary}"
            err.details.append(f"the test then failed an end-of-test check: {check}")
        note = "the test body passed, so it no longer fails where it was recorded"
    err.details.append(f"(not excused by xfail: {note})")
    return err


def _replay_check_in(exc: BaseException | None, raised: list[ReplayError]) -> bool:
    """A replay error took part in the body's failure: ``exc``, one it wraps, one caught."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ReplayError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return bool(raised)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None or not run.results:
        return
    report = ReplayReport.build(run.results)
    terminalreporter.section("pytest_replay")
    for line in report.lines(config.get_verbosity()):
        terminalreporter.line(line)
