"""--replay=verify: everything live, outputs checked against the cassette, nothing written."""

from __future__ import annotations

import json

import pytest

from .conftest import tree_digest

WORLD = """
import json, pathlib
import numpy as np
HERE = pathlib.Path(__file__).parent

def world():
    with open(HERE / "calls.log", "a") as fh:
        fh.write("x")
    return json.loads((HERE / "world.json").read_text())

def price(w):
    return {"price": w["price"], "usage": {"tokens": 100}}

def test_pipeline(replay):
    w = replay.fact("world", world)
    replay.now_millis()  # a different value on every live run: inputs are not compared
    replay.step("price", price, w, strategy=w["strategy"])
    replay.check_array("prices", np.full(4, w["array"]))
    ring = replay.ring("dispatch", capacity=8)
    ring.publish(opcode=w["opcode"], tenant=1)
"""

BASE = {"price": 10, "array": 1.5, "opcode": 7, "strategy": "live", "pad": "a" * 5000}


@pytest.fixture
def world(rt):
    rt.module(WORLD)

    def set_world(**changes):
        (rt.root / "world.json").write_text(json.dumps({**BASE, **changes}))

    set_world()
    return set_world


def calls(rt) -> int:
    log = rt.root / "calls.log"
    return len(log.read_text()) if log.exists() else 0


def test_verify_calls_live_checks_and_writes_nothing(rt, world):
    rt.record().assert_outcomes(passed=1)
    world(pad="b" * 5000)  # a different input (large: it would be a new blob) is fine
    before = tree_digest(rt.root)
    result = rt.run("--replay=verify", "-v")
    result.assert_outcomes(passed=1)
    assert calls(rt) == 2  # the fact ran live again
    result.stdout.fnmatch_lines(
        [
            "replay: mode=verify",
            "*mode verify: 1 test(s) used replay; 1 verified",
            "VERIFIED test_mod.py::test_pipeline -> cassettes/test_mod/test_pipeline.yaml",
        ]
    )
    assert tree_digest(rt.root, exclude=(".pytest_cache", "__pycache__", "calls.log")) == {
        k: v for k, v in before.items() if k != "calls.log"
    }


@pytest.mark.parametrize(
    ("change", "kind", "where"),
    [
        ({"price": 11}, "replay_drift", "*price*"),
        ({"array": 2.5}, "replay_array_diff", "*array 'prices'*"),
        ({"opcode": 8}, "replay_ring_diff", "*opcode*"),
    ],
    ids=["step", "array", "ring"],
)
def test_a_changed_world_fails_like_replay_would_and_writes_nothing(rt, world, change, kind, where):
    rt.record().assert_outcomes(passed=1)
    world(**change)
    rt.run("--replay=strict").assert_outcomes(passed=1)  # replay cannot see the change
    before = tree_digest(rt.root / "cassettes")
    result = rt.run("--replay=verify")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{kind}*", where, "*Fix:*pytest --replay=record*"])
    assert "Traceback" not in result.stdout.str()
    assert tree_digest(rt.root / "cassettes") == before
    diffs = list((rt.root / ".pytest_cache" / "replay" / "diffs").glob("*.json"))
    assert diffs  # the diff artifact is written where diffs always go


def test_a_mocked_step_runs_live_in_verify(rt, world):
    world(strategy="mocked")
    rt.record().assert_outcomes(passed=1)
    world(strategy="mocked", price=12)
    rt.run("--replay=strict").assert_outcomes(passed=1)  # mocked: served, not run
    result = rt.run("--replay=verify")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*replay_drift: output of step price drifted*"])


def test_a_fact_the_recording_lacks_fails_and_unused_ones_are_reported(rt, monkeypatch):
    rt.module(
        """
        import os
        def test_t(replay):
            replay.fact("a", lambda: 1)
            if os.environ.get("B"):
                replay.fact("b", lambda: 2)
            if os.environ.get("C"):
                replay.fact("c", lambda: 3)
        """
    )
    monkeypatch.setenv("B", "1")
    rt.record().assert_outcomes(passed=1)
    monkeypatch.delenv("B")
    result = rt.run("--replay=verify", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 verified, 1 unused*", "UNUSED test_mod.py::test_t -> *"])
    monkeypatch.setenv("C", "1")
    result = rt.run("--replay=verify")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_missing_fact: missing recorded fact",
            "*at:*key 'c' ordinal 0",
            "*Fix: re-record this test: pytest --replay=record*(the recording lacks a call*",
        ]
    )


def test_verify_needs_a_cassette_and_ignores_overrides(rt):
    rt.module(
        """
        import pytest
        CALLED = []
        @pytest.mark.replay(mode="record")
        def test_t(replay):
            replay.fact("a", lambda: CALLED.append(1))
        """
    )
    result = rt.run("--replay=verify")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*replay_missing_cassette: no cassette for this test, and verify mode never records"]
    )
    assert rt.cassettes() == []
