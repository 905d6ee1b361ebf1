"""pytest-xdist: record/replay/strict with -n 2, byte-identical cassettes, one merged summary.

Each -n 2 run starts two worker processes (seconds each), so these tests are
few and each run checks several things.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pytest_replay.report import ReplayReport
from pytest_replay.ring import read_records
from pytest_replay.session import TestResult as Result

from .conftest import tree_digest

pytest.importorskip("xdist")

SUITE = """
import numpy as np
import pytest

def double(x):
    return {"y": 2 * x, "usage": {"tokens": 10}}

@pytest.mark.parametrize("n", range(6))
def test_many(replay, n):
    v = replay.fact("v", lambda: n * 3)
    replay.step("double", double, v)
    replay.check_array("a", np.arange(n + 1000, dtype=np.float64))
    replay.ring("r", capacity=8).publish(opcode=n, tenant=n % 2)
"""


def summary_lines(result: pytest.RunResult, start: str) -> list[str]:
    return [line for line in result.stdout.lines if line.startswith(start)]


def test_xdist_records_the_same_bytes_as_a_serial_run(rt, tmp_path_factory):
    rt.module(SUITE)
    rt.record().assert_outcomes(passed=6)
    serial = tmp_path_factory.mktemp("serial") / "cassettes"
    shutil.copytree(rt.root / "cassettes", serial)
    shutil.rmtree(rt.root / "cassettes")
    result = rt.record("-n", "2")
    result.assert_outcomes(passed=6)
    assert summary_lines(result, "mode record:") == [
        "mode record: 6 test(s) used replay; 6 recorded"
    ]
    # Fresh recordings: the same bytes but for what is stored and never compared,
    # step durations and ring timestamps (two serial runs differ there too).
    serial_files, parallel_files = tree_digest(serial), tree_digest(rt.root / "cassettes")
    assert sorted(serial_files) == sorted(parallel_files) and len(serial_files) == 6 + 6 + 6
    for name, sha in serial_files.items():
        old_path, new_path = serial / name, rt.root / "cassettes" / name
        if name.endswith(".vrrl"):
            old, new = read_records(old_path), read_records(new_path)
            fields = [f for f in old.dtype.names if f != "timestamp_ns"]
            assert all(np.array_equal(old[f], new[f]) for f in fields), name
        elif name.endswith(".yaml"):
            assert timeless(old_path) == timeless(new_path), name
        else:
            assert parallel_files[name] == sha, name
    # Re-recording the serial cassettes under xdist leaves every byte as it was.
    shutil.rmtree(rt.root / "cassettes")
    shutil.copytree(serial, rt.root / "cassettes")
    result = rt.record("-n", "2")
    result.stdout.fnmatch_lines(["mode record: 6 test(s) used replay; 6 unchanged"])
    assert tree_digest(rt.root / "cassettes") == serial_files


def timeless(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if "duration_ms:" not in line]


def test_xdist_merges_the_unused_report(rt):
    rt.module(SUITE)
    rt.module("def test_old(replay):\n    replay.fact('o', lambda: 1)\n", name="test_gone")
    rt.record().assert_outcomes(passed=7)
    (rt.root / "test_gone.py").unlink()
    serial = rt.run("--replay-report-unused")
    report = rt.root / ".pytest_cache" / "replay" / "unused.json"
    expected = json.loads(report.read_text())
    assert expected["cassettes"] == ["cassettes/test_gone/test_old.yaml"]
    report.unlink()
    result = rt.run("--replay=strict", "--replay-report-unused", "-n", "2", "-v")
    result.assert_outcomes(passed=6)
    assert summary_lines(result, "mode strict:") == [
        "mode strict: 6 test(s) used replay; 6 replayed"
    ]
    assert len(summary_lines(result, "HIT ")) == 6
    assert json.loads(report.read_text()) == expected  # every worker's share merged
    assert summary_lines(result, "  cassettes/") == summary_lines(serial, "  cassettes/")
    assert summary_lines(result, "  cassettes/") == ["  cassettes/test_gone/test_old.yaml"]
    assert len(summary_lines(result, "unused files: ")) == 1
    # a subset under xdist (replay mode): the module that did not run whole is left out
    rt.run("--replay-report-unused", "-n", "2", "-k", "many and 1").assert_outcomes(passed=1)
    data = json.loads(report.read_text())
    assert data["partial"] is True and "test_mod.py" in data["not_checked"]


def test_a_cassette_shared_across_workers_is_a_warning():
    results = [
        Result("t.py::a", "record", "LIVE", "cassettes/t/x.yaml", wrote=True),
        Result("t.py::b", "record", "LIVE", "cassettes/t/x.yaml", wrote=True),
        Result("t.py::c", "record", "LIVE", "cassettes/t/c.yaml", wrote=True),
    ]
    assert ReplayReport.build(results).lines(0)[1:] == [
        "WARNING cassettes/t/x.yaml is used by 2 tests on different workers "
        "(t.py::a, t.py::b); give each its own name: @pytest.mark.replay(cassette='...')"
    ]
