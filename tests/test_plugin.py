"""Plugin behaviour end to end: byte-stability, bad files, verdicts, conflicts, hooks."""

from __future__ import annotations

import pytest

DETERMINISTIC = """
def test_det(replay):
    assert replay.fact("a", lambda: {"x": [1, 2.5, None], "s": "t\\u00e9"}) == {"x": [1, 2.5, None], "s": "t\\u00e9"}
    replay.fact("a", lambda: 2)
    replay.record_value("cfg", {"k": True})
"""


def test_recording_the_same_behaviour_twice_gives_identical_bytes(rt):
    rt.module(DETERMINISTIC)
    rt.record().assert_outcomes(passed=1)
    path = rt.cassette("test_det")
    first = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    result = rt.record()
    result.assert_outcomes(passed=1)
    assert path.read_bytes() == first
    assert path.stat().st_mtime_ns == mtime  # not even rewritten
    result.stdout.fnmatch_lines(["mode record: 1 test(s) used replay; 1 unchanged"])


def test_a_corrupt_cassette_is_one_paragraph_naming_the_file(rt):
    rt.module(DETERMINISTIC)
    rt.record()
    rt.cassette("test_det").write_text("pytest_replay: 1\nfacts: [unclosed\n")
    result = rt.run()
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "replay_cassette: cassette is not valid YAML" in out
    assert "cassettes/test_mod/test_det.yaml" in out and "Fix:" in out
    assert "Traceback" not in out and "pytest_replay/" not in out


def test_a_tampered_blob_fails_on_load(rt):
    rt.module("def test_big(replay):\n    replay.fact('big', lambda: 'x' * 10000)\n")
    rt.record().assert_outcomes(passed=1)
    (blob,) = (rt.root / "cassettes" / ".blobs").iterdir()
    blob.write_bytes(blob.read_bytes().replace(b"x", b"y", 1))
    result = rt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_cassette: blob *.json does not match its digest (tampered or corrupted)",
            "*test:*test_mod.py::test_big",
            "*cassette:*cassettes/test_mod/test_big.yaml",
            "*at:*cassettes/.blobs/*.json",
            "*Fix: restore the blob from version control, or re-record: pytest --replay=record 'test_mod.py::test_big'",
        ]
    )
    assert f"at:        {rt.root}" not in result.stdout.str()  # paths shown relative


def test_a_test_failing_while_recording_leaves_no_blobs(rt):
    rt.module(
        "def test_big(replay):\n    replay.fact('big', lambda: 'x' * 10000)\n    assert False\n"
    )
    rt.record().assert_outcomes(failed=1)
    assert not (rt.root / "cassettes").exists()


def test_a_skipped_test_is_neither_saved_nor_failed(rt):
    rt.module(
        "import pytest\ndef test_s(replay):\n    replay.fact('a', lambda: 1)\n    pytest.skip('later')\n"
    )
    result = rt.record()
    result.assert_outcomes(skipped=1)
    assert rt.cassettes() == []
    result.stdout.fnmatch_lines(["mode record: 1 test(s) used replay; -"])
    assert "NOT SAVED" not in result.stdout.str()


def test_an_error_swallowed_by_the_code_still_fails_the_test(rt, monkeypatch):
    rt.module(
        """
        import os
        def fetch(replay):
            try:
                return replay.fact("missing", lambda: 1)
            except Exception:
                return None  # retry loops and broad excepts do this

        def test_t(replay):
            replay.fact("a", lambda: 1)
            if os.environ.get("MORE"):
                fetch(replay)
        """
    )
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("MORE", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_missing_fact: missing recorded fact*",
            "*raised during the test and caught by the code*",
        ]
    )


def test_end_of_test_checks_do_not_pile_on_an_earlier_failure(rt, monkeypatch):
    rt.module(
        """
        import os
        def test_t(replay):
            if not os.environ.get("SKIP"):
                replay.fact("a", lambda: 1)
            assert not os.environ.get("SKIP"), "the test's own failure"
        """
    )
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("SKIP", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "the test's own failure" in out and "replay_unused" not in out


def test_async_fact_functions_are_awaited_only_live(rt):
    rt.module(
        """
        import asyncio
        CALLS = []
        async def fetch(x):
            CALLS.append(x)
            return x * 2

        def test_t(replay):
            async def main():
                return await asyncio.gather(*(replay.afact(f"k{i}", fetch, i) for i in range(5)))
            assert asyncio.run(main()) == [0, 2, 4, 6, 8]
            print("CALLS", len(CALLS))
        """
    )
    rt.record("-s").stdout.fnmatch_lines(["*CALLS 5*"])
    rt.run("-s", "--replay=strict").stdout.fnmatch_lines(["*CALLS 0*"])


def test_async_fact_missing_in_strict_is_never_called_live(rt, monkeypatch):
    rt.module(
        """
        import asyncio, os
        async def fetch():
            print("LIVE CALL")
            return 1

        def test_t(replay):
            if os.environ.get("MORE"):
                asyncio.run(replay.afact("new", fetch))
        """
    )
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("MORE", "1")
    result = rt.run("-s", "--replay=strict")
    result.assert_outcomes(failed=1)
    assert "LIVE CALL" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*replay_missing_fact*"])


def test_verbose_summary_gives_a_verdict_per_test(rt, monkeypatch):
    rt.pytester.makeini("[pytest]\nreplay_missing_fact_retryable = true\n")
    rt.module(
        """
        import os
        def test_hit(replay):
            replay.fact("a", lambda: 1)

        def test_partial(replay):
            replay.fact("a", lambda: 1)
            if os.environ.get("MORE"):
                replay.fact("b", lambda: 2)
        """
    )
    rt.record().assert_outcomes(passed=2)
    monkeypatch.setenv("MORE", "1")
    rt.module("def test_new(replay):\n    replay.fact('n', lambda: 0)\n", name="test_other")
    result = rt.run("-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "mode replay: 3 test(s) used replay; 2 replayed, 1 new",
            "HIT     test_mod.py::test_hit -> cassettes/test_mod/test_hit.yaml",
            "PARTIAL test_mod.py::test_partial -> *",
            "MISS    test_other.py::test_new -> *",
        ],
        consecutive=False,
    )
    assert rt.cassette("test_partial").read_text().count('"b" ') == 1
    rt.run("-v", "--replay=off").stdout.fnmatch_lines(["LIVE *test_hit*"])


def test_another_plugin_claiming_replay_is_one_clear_error(rt):
    rt.pytester.makepyfile(
        fake_esss="""
        def pytest_addoption(parser):
            group = parser.getgroup("replay")
            group.addoption("--replay", dest="replay_file")
        """
    )
    rt.module("def test_t(): pass")
    result = rt.pytester.runpytest_subprocess("-p", "fake_esss")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "replay_conflict: two plugins claim --replay" in err
    assert "Fix: pip uninstall pytest-replay" in err and "-p no:replay" in err
    assert "Traceback" not in err and "argparse" not in err


def test_the_cassette_path_hook_can_rename(rt):
    rt.pytester.makeconftest(
        """
        def pytest_replay_cassette_path(item, default):
            return default.with_name("renamed.yaml")
        """
    )
    rt.module("def test_t(replay):\n    replay.fact('a', lambda: 1)\n")
    rt.record().assert_outcomes(passed=1)
    assert [p.name for p in rt.cassettes()] == ["renamed.yaml"]


def test_marker_cassette_name_and_parametrized_ids(rt):
    rt.module(
        """
        import pytest
        @pytest.mark.parametrize("p", ["../../x", "/etc"])
        def test_p(replay, p):
            replay.fact("p", lambda: p)

        @pytest.mark.replay(cassette="shared_name")
        def test_named(replay):
            replay.fact("a", lambda: 1)
        """
    )
    rt.record().assert_outcomes(passed=3)
    names = sorted(p.relative_to(rt.root).as_posix() for p in rt.cassettes())
    assert names[0] == "cassettes/test_mod/shared_name.yaml"
    assert names[1].startswith("cassettes/test_mod/test_p[______x]-")
    assert names[2].startswith("cassettes/test_mod/test_p[_etc]-")
    rt.run("--replay=strict").assert_outcomes(passed=3)


def test_ids_that_sanitise_alike_still_get_their_own_cassettes(rt):
    rt.module(
        """
        import pytest
        @pytest.mark.parametrize("p", ["a/b", "a_b"])
        def test_p(replay, p):
            assert replay.fact("p", lambda: p) == p
        """
    )
    rt.record().assert_outcomes(passed=2)
    assert len(rt.cassettes()) == 2
    rt.run("--replay=strict").assert_outcomes(passed=2)


def test_two_tests_naming_one_cassette_is_a_clear_error(rt):
    rt.module(
        """
        import pytest
        @pytest.mark.replay(cassette="same")
        def test_a(replay):
            replay.fact("a", lambda: 1)

        @pytest.mark.replay(cassette="same")
        def test_b(replay):
            replay.fact("b", lambda: 2)
        """
    )
    result = rt.record()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*this test's cassette is already used by test_mod.py::test_a in this run*", "*Fix:*"]
    )


def test_the_gpu_marker_skips_with_a_reason_when_no_device_is_visible(rt, monkeypatch):
    from pytest_replay.ring import backend

    monkeypatch.setattr(backend, "gpu_unavailable_reason", lambda: "CuPy sees no CUDA device")
    rt.module(
        """
        import pytest
        @pytest.mark.gpu
        def test_on_device():
            import cupy_that_does_not_exist  # never reached: the marker skips first
        def test_on_host():
            pass
        """
    )
    result = rt.run("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    # -rs names the test's own file and line, not the plugin's
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_mod.py:2: CuPy sees no CUDA device"])
    probes = []
    monkeypatch.setattr(backend, "gpu_unavailable_reason", lambda: probes.append(1))
    rt.run("-m", "not gpu").assert_outcomes(passed=1)
    assert probes == []  # CuPy is not probed when no gpu test is selected
