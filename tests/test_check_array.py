"""replay.check_array end to end: recorded as .npy blobs, compared on replay."""

from __future__ import annotations

ARRAY_MODULE = """
import os
import numpy as np

def test_logits(replay):
    logits = np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 100)
    bump = float(os.environ.get("BUMP", "0"))
    if bump:
        logits[3, 7] += bump
    replay.check_array("logits", logits, rtol=1e-3, atol=1e-5)
    replay.check_array("logits", logits * 2)
"""


def test_arrays_replay_within_tolerance_and_fail_outside_it(rt, monkeypatch):
    rt.module(ARRAY_MODULE)
    rt.record().assert_outcomes(passed=1)
    text = rt.cassette("test_logits").read_text()
    assert "arrays:" in text and "dtype: float32" in text and "shape:" in text
    assert len(list((rt.root / "cassettes" / ".blobs").glob("*.npy"))) == 2
    monkeypatch.setenv("BUMP", "1e-6")
    rt.run("--replay=strict").assert_outcomes(passed=1)
    monkeypatch.setenv("BUMP", "0.5")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_array_diff:*",
            "*at:*array 'logits' index (3, 7)*",
            "*Fix:*pytest --replay=record 'test_mod.py::test_logits'",
        ]
    )


def test_an_unrecorded_array_check_fails_and_unused_checks_fail_strict(rt, monkeypatch):
    rt.module(
        """
        import os
        import numpy as np
        def test_t(replay):
            for i in range(int(os.environ.get("N", "2"))):
                replay.check_array("a", np.arange(4) + i)
        """
    )
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("N", "3")
    rt.run("--replay=strict").stdout.fnmatch_lines(["*array 'a' check #3 was not recorded*"])
    monkeypatch.setenv("N", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*replay_unused: 1 recorded item(s)*", "*array 'a'#1*"])


def test_a_bad_call_fails_when_recorded_not_on_every_replay_after(rt):
    rt.module(
        """
        import numpy as np
        def test_t(replay):
            replay.check_array("x", np.ones(3), rtol=-1.0)
        """
    )
    result = rt.record()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*check_array('x') arguments are not valid: rtol must be*"])
    assert not rt.cassette("test_t").exists()


def test_a_missing_array_blob_names_the_test_and_the_cassette(rt):
    rt.module(ARRAY_MODULE)
    rt.record().assert_outcomes(passed=1)
    for blob in (rt.root / "cassettes" / ".blobs").glob("*.npy"):
        blob.unlink()
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*test: *test_mod.py::test_logits*", "*cassette: *cassettes/test_mod/test_logits.yaml*"]
    )
    assert "blobs.py" not in result.stdout.str()  # no frames of our internals
