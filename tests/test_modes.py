"""Every row of the DESIGN modes table, run in a real inner pytest session."""

from __future__ import annotations

import pytest

from pytest_replay.errors import ConfigError
from pytest_replay.modes import Mode, effective_mode, resolve_mode

from .conftest import tree_digest

LIVE_MODULE = """
import pathlib
HERE = pathlib.Path(__file__).parent

def live_value():
    with open(HERE / "calls.log", "a") as fh:
        fh.write("x")
    return (HERE / "live.txt").read_text()

def test_value(replay):
    value = replay.fact("value", live_value)
    (HERE / "seen.txt").write_text(value)
    assert value != "fail"
"""


@pytest.fixture
def live(rt):
    rt.module(LIVE_MODULE)
    rt.pytester.path.joinpath("live.txt").write_text("one")
    return rt


def calls(rt) -> int:
    log = rt.root / "calls.log"
    return len(log.read_text()) if log.exists() else 0


def seen(rt) -> str:
    return (rt.root / "seen.txt").read_text()


def set_live(rt, value: str) -> None:
    (rt.root / "live.txt").write_text(value)


def test_off_is_live_and_writes_nothing(live):
    live.run("--replay=off").assert_outcomes(passed=1)
    assert calls(live) == 1 and seen(live) == "one"
    assert live.cassettes() == []


def test_record_is_live_and_writes_the_cassette(live):
    result = live.record()
    result.assert_outcomes(passed=1)
    assert calls(live) == 1
    text = live.cassette("test_value").read_text()
    assert '"value" ' in text and 'json "one"' in text
    result.stdout.fnmatch_lines(["mode record: 1 test(s) used replay; 1 recorded"])


def test_record_of_a_failing_test_keeps_the_old_cassette(live):
    live.record().assert_outcomes(passed=1)
    before = live.cassette("test_value").read_bytes()
    set_live(live, "fail")
    result = live.record()
    result.assert_outcomes(failed=1)
    assert live.cassette("test_value").read_bytes() == before
    result.stdout.fnmatch_lines(
        [
            "*1 failed-not-saved*",
            "NOT SAVED (test failed, old cassette kept): test_mod.py::test_value",
        ]
    )


def test_replay_serves_the_recording_without_calling(live):
    live.record()
    set_live(live, "two")
    live.run().assert_outcomes(passed=1)
    assert calls(live) == 1  # only the recording called it
    assert seen(live) == "one"


def test_replay_without_cassette_records_it(live):
    result = live.run()
    result.assert_outcomes(passed=1)
    assert live.cassette("test_value").exists()
    result.stdout.fnmatch_lines(["mode replay: 1 test(s) used replay; 1 new"])
    set_live(live, "two")
    live.run().assert_outcomes(passed=1)
    assert seen(live) == "one"


def test_replay_reports_unused_facts_without_failing(rt, monkeypatch):
    rt.module(
        """
        import os
        def test_t(replay):
            replay.fact("a", lambda: 1)
            if os.environ.get("SECOND"):
                replay.fact("b", lambda: 2)
        """
    )
    monkeypatch.setenv("SECOND", "1")
    rt.record().assert_outcomes(passed=1)
    monkeypatch.delenv("SECOND")
    result = rt.run("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 unused*", "UNUSED test_mod.py::test_t -> *"])
    strict = rt.run("--replay=strict", "-v")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*1 unused, 1 failed*", "UNUSED test_mod.py::test_t -> *"])
    assert "replayed" not in strict.stdout.str()
    strict.stdout.fnmatch_lines(
        [
            "*replay_unused: 1 recorded item(s) were never used by the test*",
            "*fact 'b'#0*",
            "*Fix:*",
        ]
    )


def test_strict_replays_and_writes_nothing(live):
    live.record()
    set_live(live, "two")
    before = tree_digest(live.root / "cassettes")
    result = live.run("--replay=strict", "-v")
    result.assert_outcomes(passed=1)
    assert seen(live) == "one" and calls(live) == 1
    assert tree_digest(live.root / "cassettes") == before
    result.stdout.fnmatch_lines(
        ["HIT test_mod.py::test_value -> cassettes/test_mod/test_value.yaml"]
    )


def test_strict_without_cassette_fails_before_the_body_runs(live):
    result = live.run("--replay=strict")
    result.assert_outcomes(failed=1)
    assert calls(live) == 0
    assert live.cassettes() == []
    result.stdout.fnmatch_lines(
        [
            "*replay_missing_cassette: no cassette for this test, and strict mode never records",
            "*cassette:*cassettes/test_mod/test_value.yaml",
            "*Fix: record it, then commit the cassette: pytest --replay=record 'test_mod.py::test_value'",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_strict_fails_on_an_unrecorded_call(rt, monkeypatch):
    rt.module(
        """
        import os
        def test_t(replay):
            replay.fact("quote", lambda: 1)
            if os.environ.get("MORE"):
                replay.fact("quote", lambda: 2)
        """
    )
    rt.record().assert_outcomes(passed=1)
    before = tree_digest(rt.root)
    monkeypatch.setenv("MORE", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_missing_fact: missing recorded fact",
            "*at:*key 'quote' ordinal 1",
            "*recorded:*1 value(s) for this key",
            "*Fix: re-record this test: pytest --replay=record 'test_mod.py::test_t'*",
        ]
    )
    assert tree_digest(rt.root) == before


def test_unknown_mode_is_a_usage_error_listing_valid_modes(rt):
    rt.module("def test_t(replay): pass")
    result = rt.run("--replay=recrod")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*unknown replay mode 'recrod' (from --replay); valid modes: off, record, replay, strict*"]
    )


def test_env_and_ini_choose_the_mode(rt, monkeypatch):
    rt.module("def test_t(replay):\n    print('MODE', replay.mode.value)")
    rt.pytester.makeini("[pytest]\nreplay_mode = off\n")
    rt.run("-s").stdout.fnmatch_lines(["*MODE off*"])
    monkeypatch.setenv("PYTEST_REPLAY_MODE", "record")
    rt.run("-s").stdout.fnmatch_lines(["*MODE record*"])
    rt.run("-s", "--replay=strict").stdout.fnmatch_lines(["*MODE strict*"])
    monkeypatch.setenv("PYTEST_REPLAY_MODE", "bogus")
    result = rt.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'bogus' (from $PYTEST_REPLAY_MODE)*"])


def test_resolve_mode_precedence():
    env = {"PYTEST_REPLAY_MODE": "strict"}
    assert resolve_mode("record", env, "off") is Mode.RECORD
    assert resolve_mode(None, env, "off") is Mode.STRICT
    assert resolve_mode(None, {}, "off") is Mode.OFF
    assert resolve_mode(None, {}, "") is Mode.REPLAY
    assert resolve_mode("verify", {}, None) is Mode.VERIFY
    with pytest.raises(ConfigError, match="valid modes: off, record, replay, strict, verify"):
        resolve_mode("bogus", {}, None)
    assert resolve_mode(None, {"PYTEST_REPLAY_MODE": ""}, None) is Mode.REPLAY  # unset


def test_an_empty_replay_flag_is_an_error_not_the_default(rt):
    # CI's `pytest --replay=$MODE` with MODE unset must not record missing cassettes.
    rt.module("def test_a(replay):\n    replay.fact('a', lambda: 1)\n")
    result = rt.run("--replay=")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*empty replay mode (from --replay)*", "*Fix: give a mode*"])
    assert not (rt.root / "cassettes").exists()


def test_strict_cannot_be_weakened_by_an_override():
    assert effective_mode(Mode.STRICT, "off", source="marker") is Mode.STRICT
    assert effective_mode(Mode.VERIFY, "record", source="marker") is Mode.VERIFY
    assert effective_mode(Mode.REPLAY, "record", source="marker") is Mode.RECORD
    assert effective_mode(Mode.REPLAY, None, source="marker") is Mode.REPLAY


def test_marker_and_replay_config_override_per_test(rt):
    rt.pytester.makeconftest(
        """
        import pytest
        @pytest.fixture
        def replay_config():
            return {"mode": "off"}
        """
    )
    rt.module(
        """
        import pytest
        def test_dir(replay):
            print("MODE", replay.mode.value)

        @pytest.mark.replay(mode="record")
        def test_marked(replay):
            print("MODE", replay.mode.value)
        """
    )
    result = rt.run("-s", "-v")
    result.stdout.fnmatch_lines(["*test_dir MODE off*", "*test_marked MODE record*"])
    assert [p.name for p in rt.cassettes()] == ["test_marked.yaml"]
    strict = rt.run("-s", "--replay=strict")
    assert "MODE off" not in strict.stdout.str()


def test_bad_override_names_the_setting(rt):
    rt.module(
        """
        import pytest
        @pytest.mark.replay(mdoe="record")
        def test_t(replay):
            pass
        """
    )
    result = rt.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*replay_config: unknown replay setting 'mdoe' in replay marker", "*known settings:*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_a_bad_mode_in_a_marker_says_how_to_fix_the_marker(rt):
    rt.module(
        """
        import pytest
        @pytest.mark.replay(mode="recrod")
        def test_t(replay):
            pass
        """
    )
    result = rt.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*unknown replay mode 'recrod'*",
            "*Fix: set mode in the replay marker or replay_config to one of: off, record, replay, strict, verify",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_tests_without_the_fixture_are_untouched(rt):
    rt.module("def test_plain():\n    assert True")
    result = rt.run("--replay=strict")
    result.assert_outcomes(passed=1)
    # No summary section, no cassette, nothing under the cache's replay folder.
    assert "= pytest_replay =" not in result.stdout.str()
    assert rt.cassettes() == []
    assert not (rt.root / ".pytest_cache" / "replay").exists()


def test_a_failing_first_recording_says_nothing_was_written(rt):
    rt.module("def test_t(replay):\n    replay.fact('k', lambda: 1)\n    assert False")
    result = rt.record()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*NOT SAVED (test failed, nothing written): test_mod.py::test_t"])
    assert rt.cassettes() == []


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ("replay_missing_fact_retryable=maybe", "must be true or false, got 'maybe'"),
        ("replay_blob_threshold=x", "must be a byte count >= 0, got 'x'"),
        ("replay_blob_threshold=-5", "must be a byte count >= 0, got '-5'"),
    ],
)
def test_bad_ini_values_name_the_option_and_a_fix(rt, option, shown):
    rt.module("def test_a(replay):\n    pass\n")
    result = rt.run("-o", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    name = option.split("=")[0]
    result.stderr.fnmatch_lines([f"*replay_config: ini option {name} {shown}*", "*Fix: set it*"])
