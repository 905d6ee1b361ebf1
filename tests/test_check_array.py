"""replay.check_array end to end: recorded as .npy blobs, compared on replay."""

from __future__ import annotations

import pytest

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
    result.assert_outcomes(errors=1)  # at setup, like any other blob
    result.stdout.fnmatch_lines(
        [
            "*replay_cassette: blob *.npy cannot be read: No such file or directory",
            "*test: *test_mod.py::test_logits*",
            "*cassette: *cassettes/test_mod/test_logits.yaml*",
            "*Fix: commit the .blobs directory*",
        ]
    )
    assert "blobs.py" not in result.stdout.str()  # no frames of our internals


MARKED = """
import pathlib
import numpy as np

def test_marked(replay):
    pathlib.Path("body-ran").write_text("yes")  # a side effect the test must not reach
    replay.check_array("probs", np.linspace(0, 1, 4096, dtype=np.float32))
"""


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_array_blob_errors_the_test_at_setup_before_its_body(rt, damage):
    rt.module(MARKED)
    rt.record().assert_outcomes(passed=1)
    (rt.root / "body-ran").unlink()
    (blob,) = (rt.root / "cassettes" / ".blobs").glob("*.npy")
    data = blob.read_bytes()
    if damage == "truncate":
        blob.write_bytes(data[:100])
    else:  # same size, one bit changed: only the digest can tell
        blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    result = rt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_marked*",
            f"*replay_cassette: blob {blob.name} does not match its digest (tampered or corrupted)",
            "*test:*test_mod.py::test_marked",
            "*cassette:*cassettes/test_mod/test_marked.yaml",
            f"*at:*cassettes/.blobs/{blob.name}",
            "*Fix: restore the blob from version control, or re-record: "
            "pytest --replay=record 'test_mod.py::test_marked'",
        ]
    )
    assert not (rt.root / "body-ran").exists()
    blob.write_bytes(data)  # put back: the replay passes again
    rt.run("--replay=strict").assert_outcomes(passed=1)
