"""The object a test holds (the ``replay`` fixture): one test's record/replay session."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .blobs import BlobStore
from .cassette import Cassette, save_document
from .context import Recorder, RecorderContext
from .diffs import DiffStore
from .errors import CassetteWriteError, MissingCassette, ReplayError, UnusedItems
from .extensions import installers
from .facts import FactLog
from .fingerprint import FINGERPRINT_KEY, current, differences
from .modes import Mode

UNUSED_SHOWN = 10


class Verdict(str, enum.Enum):
    HIT = "HIT"  # everything served from the cassette, everything consumed
    PARTIAL = "PARTIAL"  # replayed, with missing facts fetched live and appended
    MISS = "MISS"  # no cassette: recorded now (replay) or failed (strict)
    LIVE = "LIVE"  # ran live (record, off)
    UNUSED = "UNUSED"  # replayed, but recorded items were never asked for
    VERIFIED = "VERIFIED"  # ran live (verify) and matched the cassette


@dataclass
class TestResult:
    """What one test did with its cassette; the report is computed from these."""

    nodeid: str
    mode: str
    verdict: str
    cassette: str
    wrote: bool = False  # the cassette file was (re)written
    unchanged: bool = False  # recorded, but the file already held the same behaviour
    new: bool = False  # a cassette that did not exist before
    not_saved: bool = False  # record wanted, but the test failed: old file kept
    unused: int = 0
    failed: bool = False
    xfailed: bool = False  # failed as its xfail expected: not a failure, saved when recording
    env_diff: str = ""  # major environment differences from the recording (a warning)


class ReplaySession:
    """One test's session: serves facts, collects what it recorded, saves at the end.

    ``replay.fact``/``now_millis``/... are bound straight to the fact log so
    the replay hot path is one call, not two.
    """

    def __init__(
        self,
        *,
        nodeid: str,
        mode: Mode,
        cassette_path: Path,
        shown: str,
        blobs: BlobStore,
        diffs: DiffStore,
        settings: Any,
        threshold: int,
        hook: Any = None,
    ) -> None:
        self.nodeid = nodeid
        self.run_mode = mode
        self.cassette = cassette_path
        self.shown = shown
        self.settings = settings
        self._diffs = diffs
        self.raised: list[ReplayError] = []
        self.existed = cassette_path.exists()
        self.env_diff = ""
        try:
            self._build(mode, cassette_path, shown, blobs, settings, threshold, hook)
        except ReplayError as err:
            # Loading failed (bad YAML, tampered blob...): say which test and file.
            raise err.with_context(test=nodeid, cassette=shown) from None

    def _build(
        self,
        mode: Mode,
        cassette_path: Path,
        shown: str,
        blobs: BlobStore,
        settings: Any,
        threshold: int,
        hook: Any,
    ) -> None:
        recorded: Cassette | None = None
        if self.existed and mode is not Mode.RECORD and mode is not Mode.OFF:
            recorded = Cassette.load(cassette_path, blobs=blobs, shown=shown)
            self.env_diff = "; ".join(differences(recorded.doc.get(FINGERPRINT_KEY), current()))
        # replay with no cassette yet: this test records (the DESIGN table).
        self.mode = Mode.RECORD if (mode is Mode.REPLAY and recorded is None) else mode
        self.context = RecorderContext(
            nodeid=self.nodeid,
            mode=self.mode,
            run_mode=mode,
            cassette_path=cassette_path,
            shown=shown,
            blobs=blobs,
            recorded=recorded.doc if recorded is not None else None,
            settings=settings,
            error=self.error,
            hook=hook,
        )
        self.facts = FactLog(
            mode=self.mode,
            blobs=blobs,
            threshold=threshold,
            retryable=bool(settings.get("missing_fact_retryable", False)),
            recorded=self.context.recorded,
            on_error=self.error,
            shown=shown,
        )
        self.recorders: list[Recorder] = [self.facts]
        try:
            for install in installers():
                self.recorders.append(install(self))
        except BaseException:
            self.close()  # an installer failed: undo the patches of those before it
            raise
        self.fact = self.facts.fact
        self.afact = self.facts.afact
        self.record_value = self.facts.record_value
        self.now_millis = self.facts.now_millis
        self.now = self.facts.now
        self.random_bytes = self.facts.random_bytes
        self.uuid4 = self.facts.uuid4

    def __repr__(self) -> str:
        return f"<replay {self.mode.value} {self.shown}>"

    def close(self) -> None:
        """Undo what recorders patched for the test (HTTP stubs, the network block, the
        ambient clock and randomness), last installed first; idempotent.
        """
        _close_all(list(reversed(self.recorders)))

    # -- errors ----------------------------------------------------------------------

    def error(self, err: ReplayError) -> ReplayError:
        """Add test/cassette context, persist the diff payload, remember it."""
        err.with_context(test=self.nodeid, cassette=self.shown)
        if err.diff_digest is None:
            err.diff_digest, err.diff_path = self._diffs.persist(err.diff_payload())
        self.raised.append(err)
        return err

    # -- lifecycle (called by the plugin around the test body) ------------------------

    def before_call(self) -> None:
        if self.run_mode.needs_cassette and not self.existed:
            raise self.error(
                MissingCassette(
                    f"no cassette for this test, and {self.run_mode.value} mode never records",
                    fix="record it, then commit the cassette: pytest --replay=record {test}",
                )
            )

    def after_call(self) -> TestResult:
        """End-of-test checks (the test body passed), then save. Raises on failure."""
        self.close()
        if self.raised:
            # The code under test caught our error and carried on: the test
            # must not pass on a replay that did not happen.
            err = self.raised[0]
            err.details.append("(this error was raised during the test and caught by the code)")
            raise err
        for recorder in self.recorders:
            recorder.finish()
        unused = self._unused()
        err = self.unused_error(unused)
        if err is not None:
            raise err
        result = self.result(failed=False, unused=len(unused))
        if self.should_save():
            self._save(result)
        return result

    def _unused(self) -> list[str]:
        return [line for recorder in self.recorders for line in recorder.unused()]

    def unused_error(self, unused: list[str] | None = None) -> ReplayError | None:
        """The error for recorded items the test never used, in modes where that fails."""
        unused = self._unused() if unused is None else unused
        if not unused or not self.mode.unused_fails:
            return None
        shown = "; ".join(unused[:UNUSED_SHOWN])
        more = f" and {len(unused) - UNUSED_SHOWN} more" if len(unused) > UNUSED_SHOWN else ""
        return self.error(
            UnusedItems(
                f"{len(unused)} recorded item(s) were never used by the test",
                place=f"{shown}{more}",
                fix="if the test no longer makes these calls, re-record it: "
                "pytest --replay=record {test}",
            )
        )

    def _save(self, result: TestResult) -> None:
        """Write the cassette, its sidecars and blobs; a failure raises a ReplayError."""
        try:
            self.context.blobs.flush()
            for recorder in self.recorders:
                recorder.save_files()
            result.wrote = save_document(self.cassette, self._document())
        except ReplayError as err:  # a sidecar that could not be written
            raise self.error(err).with_traceback(None) from None
        except OSError as exc:
            raise self.error(
                CassetteWriteError(
                    f"cassette could not be written: {exc.strerror or exc}",
                    place=exc.filename and str(exc.filename),
                    fix="check that the cassette directory is writable",
                )
            ) from None
        except yaml.YAMLError as exc:
            raise self.error(
                CassetteWriteError(
                    "cassette could not be written: a recorded value has no YAML form",
                    details=[str(exc).splitlines()[0]],
                    fix="record plain JSON values (dict, list, str, int, float, bool, "
                    "None), bytes or arrays; convert other objects before returning them",
                )
            ) from None
        result.unchanged = not result.wrote
        result.new = not self.existed

    def failed_result(self, *, skipped: bool = False) -> TestResult:
        """A test that did not pass: nothing saved; a skip is not a failure."""
        self.close()
        result = self.result(failed=not skipped, unused=len(self._unused()))
        if any(err.kind.startswith("replay_missing") for err in self.raised):
            result.verdict = Verdict.MISS.value  # the cassette lacked what the test asked
        result.not_saved = not skipped and self.should_save()
        result.new = not self.existed  # there is no old cassette to keep
        return result

    def expected_failure(self, result: TestResult, *, complete: bool = True) -> None:
        """The test failed as its xfail expected: ``result`` (from ``failed_result``) is
        not a failure, and a recording test saves what it took in up to that failure,
        which a replay needs to reach the same failure. A replay error raised during
        the test, or a failure out of a recorded fetch (``complete=False``), means
        the recording is not whole: nothing is saved then. Raises a
        ReplayError when the cassette cannot be written.
        """
        save = self.should_save() and not self.raised and complete
        if save:
            if self.mode.records:
                for recorder in self.recorders:
                    recorder.finish()  # rings drain; a recording checks nothing
            self._save(result)
        result.failed = False
        result.xfailed = True
        result.not_saved = not save and self.should_save()

    def result(self, *, failed: bool, unused: int) -> TestResult:
        return TestResult(
            nodeid=self.nodeid,
            mode=self.run_mode.value,
            verdict=self._verdict(unused).value,
            cassette=self.shown,
            unused=unused,
            failed=failed,
            env_diff=self.env_diff,
        )

    # -- internals -------------------------------------------------------------------

    def should_save(self) -> bool:
        """This test's cassette is written if it passes (record; replay with new facts)."""
        if self.mode is Mode.RECORD:
            return True
        # replay: only what is new (facts fetched live for a retryable miss).
        return self.run_mode is Mode.REPLAY and self._new_count() > 0

    def _new_count(self) -> int:
        return sum(recorder.new_count for recorder in self.recorders)

    def _verdict(self, unused: int) -> Verdict:
        if self.run_mode is Mode.VERIFY:
            if not self.existed:
                return Verdict.MISS
            return Verdict.UNUSED if unused else Verdict.VERIFIED
        if self.run_mode.live_io:
            return Verdict.LIVE
        if not self.existed:
            return Verdict.MISS
        if self._new_count():
            return Verdict.PARTIAL
        if unused:
            return Verdict.UNUSED
        return Verdict.HIT

    def _document(self) -> dict[str, Any]:
        sections: dict[str, Any] = {}
        for recorder in self.recorders:
            sections.update(recorder.to_yaml())
        if not self.mode.records and self.context.recorded is not None:
            # An appending replay keeps every section it did not touch.
            for name, value in self.context.recorded.items():
                sections.setdefault(name, value)
        return Cassette.new_document(self.nodeid, sections, env=current())


def _close_all(recorders: list[Any]) -> None:
    """Close each recorder that can be closed; one failing does not keep the others open."""
    if not recorders:
        return
    head, rest = recorders[0], recorders[1:]
    try:
        close = getattr(head, "close", None)
        if close is not None:
            close()
    finally:
        _close_all(rest)
