"""xfail tests: recorded up to their expected failure, replayed, and never excused when unrecorded."""

from __future__ import annotations

import inspect

import pytest

from pytest_replay import errors
from pytest_replay.report import UNEXCUSED_KINDS, unexcused_error

KNOWN_BUG = """
import pytest

@pytest.mark.{marker}
def test_bug(replay):
    assert replay.fact("x", lambda: 1) == 2
"""

MARKERS = ["xfail", "xfail(strict=True)", "xfail(raises=AssertionError, reason='bug')"]


@pytest.mark.parametrize("marker", MARKERS)
def test_record_saves_an_expected_failure_and_counts_it_recorded(rt, marker):
    rt.module(KNOWN_BUG.format(marker=marker))
    result = rt.record()
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["mode record: 1 test(s) used replay; 1 recorded, 1 xfailed"])
    assert "NOT SAVED" not in result.stdout.str()
    assert '"x"' in rt.cassette("test_bug").read_text()  # what it took in before the failure


@pytest.mark.parametrize("marker", MARKERS)
def test_strict_replays_a_recorded_xfail_test_and_counts_it(rt, marker):
    rt.module(KNOWN_BUG.format(marker=marker))
    rt.record().assert_outcomes(xfailed=1)
    result = rt.run("--replay=strict", "-v")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "mode strict: 1 test(s) used replay; 1 replayed, 1 xfailed",
            "HIT test_mod.py::test_bug -> cassettes/test_mod/test_bug.yaml",
        ]
    )


@pytest.mark.parametrize("marker", MARKERS[:2])
def test_strict_without_a_cassette_fails_an_xfail_test(rt, marker):
    rt.module(KNOWN_BUG.format(marker=marker))
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "replay_missing_cassette: no cassette for this test, and strict mode never records",
            "*test:*test_mod.py::test_bug",
            "*(not excused by xfail: it is about the recording, not the code under test)",
            "*Fix: record it, then commit the cassette: pytest --replay=record 'test_mod.py::test_bug'",
            "mode strict: 1 test(s) used replay; 1 failed",
        ]
    )
    assert "Traceback" not in result.stdout.str()


ASKS_MORE = """
import pytest

@pytest.mark.xfail
def test_bug(replay):
    replay.fact("x", lambda: 1)
    if {more}:
        replay.fact("y", lambda: 1)
    assert False
"""


@pytest.mark.parametrize("mode", ["strict", "replay"])
def test_a_fact_the_cassette_lacks_is_not_excused_by_xfail(rt, mode):
    rt.module(ASKS_MORE.format(more=False))
    rt.record().assert_outcomes(xfailed=1)
    rt.module(ASKS_MORE.format(more=True))
    result = rt.run(f"--replay={mode}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "replay_missing_fact: missing recorded fact",
            "*at:*key 'y' ordinal 0",
            "*(not excused by xfail: it is about the recording, not the code under test)",
        ]
    )


def test_an_unrecorded_error_the_code_caught_is_not_excused_either(rt):
    rt.module(
        """
        import pytest

        @pytest.mark.xfail
        def test_bug(replay):
            try:
                replay.fact("y", lambda: 1)
            except Exception:
                pass
            assert False
        """.replace("\n        ", "\n")
    )
    rt.record().assert_outcomes(xfailed=1)
    rt.module(
        rt.root.joinpath("test_mod.py").read_text().replace('replay.fact("y"', 'replay.fact("z"')
    )
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "replay_missing_fact: missing recorded fact",
            "*at:*key 'z' ordinal 0",
            "*(this error was raised during the test and caught by the code)",
            "*(not excused by xfail: it is about the recording, not the code under test)",
        ]
    )


def test_other_replay_failures_stay_expected_failures(rt):
    # The user marked the test xfail; a drift in what it puts out is theirs to expect.
    src = """
import numpy as np
import pytest

@pytest.mark.xfail
def test_bug(replay):
    replay.check_array("a", np.array([{value}]))
    assert False
"""
    rt.module(src.format(value=1.0))
    rt.record().assert_outcomes(xfailed=1)
    rt.module(src.format(value=2.0))
    result = rt.run("--replay=strict")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["mode strict: 1 test(s) used replay; 1 replayed, 1 xfailed"])


def test_an_exception_raises_does_not_name_is_a_failure_and_not_saved(rt):
    rt.module(
        KNOWN_BUG.format(marker="xfail(raises=KeyError)")
        + KNOWN_BUG.format(marker="xfail(raises=AssertionError)").replace("test_bug", "test_ok")
    )
    result = rt.record()
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "mode record: 2 test(s) used replay; 1 recorded, 1 xfailed, 1 failed-not-saved, "
            "1 failed",
            "NOT SAVED (test failed, nothing written): test_mod.py::test_bug",
        ]
    )
    assert rt.cassettes() == [rt.cassette("test_ok")]


XPASS = """
import pytest

@pytest.mark.{marker}
def test_fixed(replay):
    replay.fact("x", lambda: {value})
"""


def test_xpass_strict_is_a_failure_and_keeps_the_old_cassette(rt):
    rt.module(XPASS.format(marker="xfail(strict=True)", value=1))
    result = rt.record()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "mode record: 1 test(s) used replay; 1 failed-not-saved, 1 failed",
            "NOT SAVED (test failed, nothing written): test_mod.py::test_fixed",
        ]
    )
    assert rt.cassettes() == []

    rt.module(XPASS.format(marker="xfail(strict=False)", value=1))
    rt.record().assert_outcomes(xpassed=1)  # a non-strict XPASS saves like a pass
    old = rt.cassette("test_fixed").read_bytes()
    rt.module(XPASS.format(marker="xfail(strict=True)", value=2))
    result = rt.record()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["NOT SAVED (test failed, old cassette kept): *::test_fixed"])
    assert rt.cassette("test_fixed").read_bytes() == old


def test_xfail_run_false_neither_records_nor_needs_a_cassette(rt):
    rt.module(
        KNOWN_BUG.format(marker="xfail(run=False)").replace("test_bug", "test_never")
        + KNOWN_BUG.format(marker="xfail")
    )
    result = rt.record()
    result.assert_outcomes(xfailed=2)
    result.stdout.fnmatch_lines(["mode record: 1 test(s) used replay; 1 recorded, 1 xfailed"])
    assert rt.cassettes() == [rt.cassette("test_bug")]
    rt.cassette("test_bug").unlink()
    # strict: the test that runs fails for its missing cassette, the one that never runs
    # needs none.
    result = rt.run("--replay=strict", "-rfx")
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "FAILED test_mod.py::test_bug - replay_missing_cassette*",
            "XFAIL *::test_never - *NOTRUN*",
        ]
    )


IMPERATIVE = """
import pytest

def test_later(replay):
    replay.fact("x", lambda: {value})
    pytest.xfail("known bug")
    replay.fact("never", lambda: 0)
"""


def test_imperative_xfail_records_what_came_before_and_replays(rt):
    rt.module(IMPERATIVE.format(value=1))
    result = rt.record()
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["mode record: 1 test(s) used replay; 1 recorded, 1 xfailed"])
    text = rt.cassette("test_later").read_text()
    assert '"x"' in text and "never" not in text

    result = rt.run("--replay=strict")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["mode strict: 1 test(s) used replay; 1 replayed, 1 xfailed"])

    rt.cassette("test_later").unlink()
    rt.run("--replay=strict").assert_outcomes(failed=1)  # the cassette check comes first


def test_the_makereport_wrapper_sits_outside_pytests_skipping(rt):
    # pluggy calls hook implementations from the end of this list: ours must come
    # after skipping's so that its wrapper sees the report skipping made xfailed.
    rt.pytester.makeconftest(
        """
        import pytest_replay.plugin as ours

        def pytest_configure(config):
            impls = config.pluginmanager.hook.pytest_runtest_makereport.get_hookimpls()
            mods = [getattr(i.plugin, "__name__", "") for i in impls]
            mine = mods.index(ours.__name__)
            assert mine > mods.index("_pytest.skipping"), mods
            assert impls[mine].tryfirst and impls[mine].wrapper
        """
    )
    rt.module("def test_t():\n    pass\n")
    rt.run().assert_outcomes(passed=1)


def test_unrecorded_kinds_are_kinds_errors_raise():
    kinds = {
        cls.kind
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ReplayError)
    }
    assert kinds >= UNEXCUSED_KINDS
    assert {k for k in kinds if k.startswith("replay_missing")} <= UNEXCUSED_KINDS
    drift = errors.DriftExceeded("d")
    missing = errors.MissingFact("m")
    assert unexcused_error([None, ValueError(), drift, missing]) is missing
    assert unexcused_error([drift, errors.ArrayDiff("a")]) is None
    assert unexcused_error([drift], every_kind=True) is drift  # --replay-twice's second pass
    assert unexcused_error([ValueError()], every_kind=True) is None


def test_an_unrecorded_error_at_setup_errors_the_xfail_test(rt):
    src = """
import time
import pytest

@pytest.mark.xfail
@pytest.mark.replay(clock={clock})
def test_bug(replay):
    time.time()
    assert False
"""
    rt.module(src.format(clock=False))
    rt.record().assert_outcomes(xfailed=1)
    rt.module(src.format(clock=True))  # the cassette holds no clock start value
    result = rt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_bug*",
            "replay_missing_fact: the cassette was recorded without clock=*",
            "*(not excused by xfail: it is about the recording, not the code under test)",
        ]
    )


def test_an_expected_failure_after_a_replay_error_is_not_saved(rt):
    rt.pytester.makeini("[pytest]\nreplay_missing_fact_retryable = true\n")
    src = """
import numpy as np
import pytest

@pytest.mark.xfail
def test_bug(replay):
    if {more}:
        replay.fact("y", lambda: 1)  # appended live
    replay.check_array("a", np.array([{value}]))
    assert False
"""
    rt.module(src.format(more=False, value=1.0))
    rt.record().assert_outcomes(xfailed=1)
    old = rt.cassette("test_bug").read_bytes()
    rt.module(src.format(more=True, value=2.0))
    result = rt.run()
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(
        ["NOT SAVED (xfailed, recording incomplete, old cassette kept): test_mod.py::test_bug"]
    )
    assert rt.cassette("test_bug").read_bytes() == old


RAISED_IN_A_FETCH = """
import pytest

def fetch():
    raise ConnectionError("known bug")

def step_body():
    pytest.xfail("known bug inside a step")

@pytest.mark.xfail(raises=ConnectionError)
def test_fact(replay):
    replay.fact("resp", fetch)

def test_step(replay):
    replay.step("s", step_body)
"""


def test_an_expected_failure_out_of_a_recorded_fetch_is_not_saved(rt):
    # The fetch recorded nothing, so a replay could never reach the same failure.
    rt.module(RAISED_IN_A_FETCH)
    result = rt.record()
    result.assert_outcomes(xfailed=2)
    result.stdout.fnmatch_lines(
        [
            "NOT SAVED (xfailed, recording incomplete, nothing written): test_mod.py::test_fact",
            "NOT SAVED (xfailed, recording incomplete, nothing written): test_mod.py::test_step",
        ]
    )
    assert not rt.cassette("test_fact").exists() and not rt.cassette("test_step").exists()


def test_an_xfail_test_with_bad_replay_settings_errors(rt):
    rt.module(
        """
        import pytest

        @pytest.mark.xfail(strict=True)
        @pytest.mark.replay(redact_values=["ab"])
        def test_bug(replay):
            assert False
        """
    )
    result = rt.record()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*replay_config*", "*(not excused by xfail*"])


def test_a_missing_array_blob_is_not_excused_by_xfail(rt):
    rt.module(
        """
        import numpy as np, pytest

        @pytest.mark.xfail(strict=True)
        def test_bug(replay):
            replay.check_array("a", np.arange(4.0))
            assert False
        """
    )
    rt.record().assert_outcomes(xfailed=1)
    for blob in (rt.root / "cassettes" / ".blobs").iterdir():
        blob.unlink()
    result = rt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*replay_cassette: blob * cannot be read*"])


def test_replay_twice_does_not_excuse_a_second_pass_difference(rt):
    rt.module(
        """
        import numpy as np, pytest

        @pytest.mark.xfail
        def test_nondet(replay):
            replay.check_array("a", np.random.rand(3))
        """
    )
    result = rt.record("--replay-twice")
    result.assert_outcomes(failed=1)
    assert "replay-twice: replaying the cassette" in result.stdout.str()
    assert not rt.cassette("test_nondet").exists()


FAILS_EARLIER = """
import os
import pytest

@pytest.mark.xfail(reason="known bug")
def test_bug(replay):
    replay.fact("a", lambda: 1)
    if os.environ.get("EARLY"):
        assert False, "now fails before it reaches b"
    replay.fact("b", lambda: 2)
    assert False, "fails after b"
"""


def test_strict_fails_an_xfail_test_that_now_fails_before_using_its_recording(rt, monkeypatch):
    rt.module(FAILS_EARLIER)
    rt.record().assert_outcomes(xfailed=1)
    rt.run("--replay=strict").assert_outcomes(xfailed=1)  # same failure: still expected
    monkeypatch.setenv("EARLY", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "replay_unused: 1 recorded item(s) were never used by the test",
            "*at:*fact 'b'*",
            "*the test failed with AssertionError: now fails before it reaches b",
            "*(not excused by xfail: the test failed before it reached all it recorded, "
            "so it no longer fails where it was recorded)",
            "*Fix: if the test no longer makes these calls, re-record it: "
            "pytest --replay=record 'test_mod.py::test_bug'",
            "mode strict: 1 test(s) used replay; 1 unused, 1 failed",
        ]
    )
    # replay mode does not fail a test over unused items, xfail or not
    rt.run("--replay=replay").assert_outcomes(xfailed=1)


PASSES_NOW = """
import os
import numpy as np
import pytest

@pytest.mark.xfail(reason="known bug")
def test_bug(replay):
    replay.ring("d", capacity=16).publish(int(os.environ.get("OP", "1")))
    replay.fact("a", lambda: 1)
    if os.environ.get("PASS_EARLY"):
        return
    replay.check_array("out", np.arange(4.0) + float(os.environ.get("SHIFT", "0")))
    replay.fact("b", lambda: 2)
    assert False, "fails after b"
"""


def test_strict_fails_an_xfail_test_whose_body_now_passes_leaving_items_unused(rt, monkeypatch):
    rt.module(PASSES_NOW)
    rt.record().assert_outcomes(xfailed=1)
    monkeypatch.setenv("PASS_EARLY", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "replay_unused: 2 recorded item(s) were never used by the test",
            "*(not excused by xfail: the test body passed, so it no longer fails where it "
            "was recorded)",
        ]
    )
    assert "the test failed with" not in out  # it did not: only the leftovers failed it
    assert out.count("replay_unused: 2 recorded item(s) were never used by the test\n") == 1
    diffs = list((rt.root / ".pytest_cache" / "replay" / "diffs").glob("*.json"))
    assert len(diffs) == 1  # one error, one diff artifact


def test_a_replay_check_that_stops_an_xfail_test_early_stays_expected(rt, monkeypatch):
    # The marker may be there for exactly that difference; items after it go unused.
    rt.module(PASSES_NOW)
    rt.record().assert_outcomes(xfailed=1)
    monkeypatch.setenv("SHIFT", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(
        ["mode strict: 1 test(s) used replay; 1 replayed, 1 xfailed, 1 unused"]
    )


def test_a_passing_body_with_leftovers_fails_also_when_an_end_check_fails(rt, monkeypatch):
    rt.module(PASSES_NOW)
    rt.record().assert_outcomes(xfailed=1)
    monkeypatch.setenv("PASS_EARLY", "1")
    monkeypatch.setenv("OP", "2")  # the ring diff is found after the body returned
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "replay_unused: 2 recorded item(s) were never used by the test",
            "*the test then failed an end-of-test check: replay_ring_diff: *",
            "*(not excused by xfail: the test body passed, so it no longer fails where it "
            "was recorded)",
        ]
    )


CHECK_HANDLED = """
import os
import numpy as np
import pytest

class AppError(Exception):
    pass

@pytest.mark.xfail(reason="known bug")
def test_bug(replay):
    replay.fact("a", lambda: 1)
    try:
        replay.check_array("out", np.arange(4.0) + float(os.environ.get("SHIFT", "0")))
    except Exception as exc:
        if os.environ.get("SWALLOW"):
            return
        raise AppError("check failed") from exc
    replay.fact("b", lambda: 2)
    assert False, "fails after b"
"""


@pytest.mark.parametrize("swallow", ["", "1"])
def test_a_replay_check_the_code_wraps_or_swallows_stays_expected(rt, monkeypatch, swallow):
    rt.module(CHECK_HANDLED)
    rt.record().assert_outcomes(xfailed=1)
    monkeypatch.setenv("SHIFT", "1")
    monkeypatch.setenv("SWALLOW", swallow)
    result = rt.run("--replay=strict")
    result.assert_outcomes(xfailed=1)
    assert "unused" in result.stdout.str()  # counted, not failed
