"""--replay-twice: record, then replay that recording at once; non-determinism fails the test."""

from __future__ import annotations

import pytest

TWICE = """
import itertools, os, pytest

COUNTER = itertools.count()
SETUPS = []

@pytest.fixture
def client(replay):
    SETUPS.append(1)
    return replay

def answer(n):
    return {"n": n}

def test_det(client):
    v = client.fact("v", lambda: next(COUNTER))  # a different live value each call: a fact
    client.step("answer", answer, v)

def test_flaky(replay):
    v = replay.fact("v", lambda: 1)
    leak = next(COUNTER) if os.environ.get("LEAK") else 0  # not through replay
    replay.step("answer", answer, v + leak)

def test_plain():
    assert len(SETUPS) in (0, 2)  # each pass got a fresh fixture
"""


def test_a_deterministic_test_records_then_replays_and_counts_once(rt):
    rt.module(TWICE)
    result = rt.run("--replay=record", "--replay-twice", "-k", "det or plain")
    result.assert_outcomes(passed=2, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "mode record: 1 test(s) used replay; 1 recorded",
            "mode replay-twice: 1 test(s) used replay; 1 replayed",
        ]
    )
    assert rt.cassette("test_det").exists()


def test_non_determinism_fails_names_the_difference_and_keeps_the_old_cassette(rt, monkeypatch):
    rt.module(TWICE)
    rt.record("-k", "flaky").assert_outcomes(passed=1, deselected=2)
    path = rt.cassette("test_flaky")
    before = path.read_bytes()
    monkeypatch.setenv("LEAK", "1")
    result = rt.run("--replay=record", "--replay-twice", "-k", "flaky")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(
        [
            "replay-twice: replaying the cassette this test had just recorded did not give "
            "the same run, so the test is not deterministic (what it recorded was discarded); "
            "what differed:",
            "*replay_drift: output of step answer drifted*",
            "*at:*answer: n",
            "*recorded:*1",
            "*current:*2",
            "*Modified*n*1*2",
            "  Fix: take every varying input through replay.fact / now / random_bytes / uuid4 "
            "(or a step), then re-record: "
            "pytest --replay=record --replay-twice 'test_mod.py::test_flaky'",
            "mode record: 1 test(s) used replay; 1 failed-not-saved",
            "mode replay-twice: 1 test(s) used replay; 1 failed",
            "NOT SAVED (test failed, old cassette kept): test_mod.py::test_flaky",
        ]
    )
    # One Fix line, for non-determinism: not the drift error's "if the new output
    # is right, re-record", which would record the flaky run again.
    assert result.stdout.str().count("Fix:") == 1
    assert path.read_bytes() == before


def test_a_new_non_deterministic_cassette_is_removed(rt, monkeypatch):
    rt.module(TWICE)
    monkeypatch.setenv("LEAK", "1")
    result = rt.run("--replay=record", "--replay-twice", "-k", "flaky")
    result.assert_outcomes(failed=1, deselected=2)
    assert not rt.cassette("test_flaky").exists()
    # the failure counts once, under the second pass; nothing existed to keep
    result.stdout.fnmatch_lines(
        [
            "mode record: 1 test(s) used replay; 1 failed-not-saved",
            "mode replay-twice: 1 test(s) used replay; 1 failed",
            "NOT SAVED (test failed, nothing written): test_mod.py::test_flaky",
        ]
    )


@pytest.mark.parametrize("mode", ["strict", "verify", "off"])
def test_twice_needs_a_mode_that_records(rt, mode):
    rt.module("def test_t(replay): pass")
    result = rt.run(f"--replay={mode}", "--replay-twice")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--replay={mode} never records*"])


SIDECARS = """
import itertools, os, pytest

COUNTER = itertools.count()

def answer(n):
    return {"n": n}

@pytest.mark.replay(cassette="test_flaky.v2")
def test_other(replay):
    replay.ring("r", capacity=4).publish(opcode=1)

def test_flaky(replay):
    replay.ring(os.environ.get("RING", "r"), capacity=4).publish(opcode=1)
    leak = next(COUNTER) if os.environ.get("LEAK") else 0
    replay.step("answer", answer, leak)
"""


def test_undoing_a_new_cassette_leaves_the_ring_logs_of_a_look_alike_name(rt, monkeypatch):
    rt.module(SIDECARS)
    rt.record("-k", "other").assert_outcomes(passed=1, deselected=1)
    folder = rt.root / "cassettes" / "test_mod"
    other = folder / "test_flaky.v2.r.vrrl"
    assert other.exists()
    monkeypatch.setenv("LEAK", "1")
    rt.run("--replay=record", "--replay-twice", "-k", "flaky").assert_outcomes(
        failed=1, deselected=1
    )
    assert other.exists()
    assert not (folder / "test_flaky.yaml").exists()
    assert not (folder / "test_flaky.r.vrrl").exists()


def test_undoing_a_recording_puts_back_the_old_ring_logs_only(rt, monkeypatch):
    rt.module(SIDECARS)
    rt.record().assert_outcomes(passed=2)
    folder = rt.root / "cassettes" / "test_mod"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sorted(before) == [
        "test_flaky.r.vrrl",
        "test_flaky.v2.r.vrrl",
        "test_flaky.v2.yaml",
        "test_flaky.yaml",
    ]
    monkeypatch.setenv("LEAK", "1")
    monkeypatch.setenv("RING", "s")  # the new recording has another ring
    rt.run("--replay=record", "--replay-twice", "-k", "flaky").assert_outcomes(
        failed=1, deselected=1
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


VARIANTS = """
import itertools, pytest

PASS = itertools.count()

def test_unused(replay):
    if next(PASS) == 0:  # only the first pass asks: the second leaves it unused
        replay.fact("once", lambda: 1)

def test_rewrapped(replay):
    key = f"k{next(PASS)}"  # the second pass asks for a fact never recorded
    try:
        replay.fact(key, lambda: 1)
    except Exception as exc:
        raise RuntimeError("lookup failed") from exc
"""


@pytest.mark.parametrize(
    ("test", "inner"),
    [("test_unused", "replay_unused"), ("test_rewrapped", "replay_missing_fact")],
)
def test_a_twice_failure_has_one_fix_line_with_the_quoted_node_id(rt, test, inner):
    rt.module(VARIANTS)
    result = rt.run("--replay=record", "--replay-twice", "-k", test)
    result.assert_outcomes(failed=1, deselected=1)
    out = result.stdout.str()
    assert inner in out  # what differed is still shown
    assert out.count("Fix:") == 1, out
    assert f"pytest --replay=record --replay-twice 'test_mod.py::{test}'" in out
