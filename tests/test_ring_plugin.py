"""replay.ring end to end: publishes recorded to a .vrrl sidecar, diffed on replay."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_replay.ring import read_records
from pytest_replay.ring.section import rings_section_problem

RING_MODULE = """
import os
import numpy as np

def test_dispatch(replay):
    ring = replay.ring("dispatch", capacity=int(os.environ.get("CAPACITY", "64")))
    ring.publish(opcode=7, tenant=3, args=(1, 2, 3, 4))
    n = 10
    ring.publish_many(np.full(n, 9), np.arange(n) % 3, np.ones((n, 4), dtype=np.uint32))
    opcode = int(os.environ.get("OPCODE", "5"))
    slot = ring.publish(opcode=opcode, tenant=1)
    ring.complete(slot, status=2, output=np.arange(8, dtype=np.float32))
"""


def test_ring_records_a_sidecar_and_replays_identically(rt):
    rt.module(RING_MODULE)
    rt.record().assert_outcomes(passed=1)
    log = rt.root / "cassettes" / "test_mod" / "test_dispatch.dispatch.vrrl"
    assert log.read_bytes()[:8] == b"VRRL0001"
    records = read_records(log)
    assert len(records) == 12 and int(records["opcode"][0]) == 7
    text = rt.cassette("test_dispatch").read_text()
    assert "rings:" in text and "log: test_dispatch.dispatch.vrrl" in text and "records: 12" in text
    before = log.read_bytes()
    rt.run("--replay=strict").assert_outcomes(passed=1)
    # a re-record differs only in timestamps: the sidecar stays byte-identical
    rt.record().assert_outcomes(passed=1)
    assert log.read_bytes() == before


def test_a_changed_publish_is_a_ring_diff_naming_record_and_field(rt, monkeypatch):
    rt.module(RING_MODULE)
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("OPCODE", "6")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_ring_diff:*",
            "*record 11*opcode*",
            "*recorded log: cassettes/test_mod/test_dispatch.dispatch.vrrl",
            "*Fix:*",
        ]
    )
    assert "ring capacity:" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_a_changed_capacity_is_named_in_the_ring_diff(rt, monkeypatch):
    rt.module(RING_MODULE)
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("CAPACITY", "8")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*replay_ring_diff:*", "*ring capacity: recorded 64, now 8*", "*Fix:*"]
    )


def test_an_unopened_recorded_ring_is_unused_in_strict(rt, monkeypatch):
    rt.module(
        """
        import os
        def test_t(replay):
            if not os.environ.get("NORING"):
                replay.ring("r", capacity=4).publish(1)
        """
    )
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("NORING", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*replay_unused*", "*ring 'r'*"])


def test_long_test_ids_and_ring_names_fit_the_file_name_limit(rt):
    rt.module(
        """
        import pytest
        @pytest.mark.parametrize("p", ["x" * 300])
        def test_t(replay, p):
            ring = replay.ring("r" * 120, capacity=4)
            ring.publish(opcode=1)
        """
    )
    rt.record().assert_outcomes(passed=1)
    (log,) = (rt.root / "cassettes" / "test_mod").glob("*.vrrl")
    assert len(log.name.encode()) <= 210
    rt.run("--replay=strict").assert_outcomes(passed=1)


def test_a_ring_log_path_outside_the_cassette_folder_is_refused(rt):
    rt.module(
        """
        def test_t(replay):
            replay.ring("r", capacity=4).publish(opcode=1)
        """
    )
    rt.record().assert_outcomes(passed=1)
    cassette = rt.cassette("test_t")
    text = cassette.read_text()
    cassette.write_text(text.replace("log: test_t.r.vrrl", "log: ../../etc/passwd"))
    result = rt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*'log' must be a file name next to the cassette, got '../../etc/passwd'*", "*Fix:*"]
    )


GOOD_ENTRY = {"log": "t.r.vrrl", "records": 3, "capacity": 4, "digest": "ab" * 32}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("records", "eleven", "'records' must be a record count (an integer >= 0), got 'eleven'"),
        ("records", -1, "'records' must be a record count (an integer >= 0), got -1"),
        ("records", None, "'records' must be a record count (an integer >= 0), got None"),
        ("records", 1.0, "'records' must be a record count (an integer >= 0), got 1.0"),
        ("records", True, "'records' must be a record count (an integer >= 0), got True"),
        ("capacity", "banana", "'capacity' must be the ring's capacity (an integer from 1 to"),
        ("capacity", 0, "'capacity' must be the ring's capacity (an integer from 1 to"),
        ("capacity", 2**21, "'capacity' must be the ring's capacity (an integer from 1 to"),
        ("digest", "hello", "'digest' must be the stream's digest (64 lowercase hex digits)"),
        ("digest", "AB" * 32, "'digest' must be the stream's digest (64 lowercase hex digits)"),
        ("digest", [1, 2], "'digest' must be the stream's digest (64 lowercase hex digits)"),
        ("log", "../x.vrrl", "'log' must be a file name next to the cassette, got '../x.vrrl'"),
    ],
)
def test_rings_section_problem_names_the_key_and_value(key, value, expected):
    assert rings_section_problem({"r": GOOD_ENTRY}) is None
    summary, place = rings_section_problem({"r": {**GOOD_ENTRY, key: value}})
    assert summary.startswith(f"ring 'r': {expected}") and place == f"rings.r.{key}"
    missing = {k: v for k, v in GOOD_ENTRY.items() if k != key}
    summary, _ = rings_section_problem({"r": missing})
    assert summary.endswith(", got missing")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("records", "eleven", "'records' must be a record count (an integer >= 0), got 'eleven'"),
        ("digest", None, "'digest' must be the stream's digest*got missing"),
    ],
)
def test_a_broken_rings_entry_errors_before_the_body(rt, key, value, expected):
    rt.module(RING_MARKED)
    rt.record().assert_outcomes(passed=1)
    cassette = rt.cassette("test_r")
    doc = yaml.safe_load(cassette.read_text())
    if value is None:
        del doc["rings"]["dispatch"][key]
    else:
        doc["rings"]["dispatch"][key] = value
    cassette.write_text(yaml.safe_dump(doc, sort_keys=False))
    Path("body-ran").unlink()
    result = rt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*replay_cassette: ring 'dispatch': {expected}*", f"*at:*rings.dispatch.{key}*", "*Fix:*"]
    )
    assert not Path("body-ran").exists()


RING_MARKED = """
import pathlib

def test_r(replay):
    pathlib.Path("body-ran").write_text("yes")  # a side effect the test must not reach
    ring = replay.ring("dispatch", capacity=8)
    for op in range(14):
        ring.publish(opcode=op)
"""


@pytest.mark.parametrize(
    ("damage", "summary"),
    [
        ("truncate", "ring_truncated: ring log is shorter than its 14 record slots"),
        ("append", "ring_header_mismatch: ring log is longer than its 14 record slots"),
        ("magic", "ring_header_mismatch: not a VRRL0001 ring log (bad file magic)"),
        ("delete", "ring_log: ring log does not exist"),
    ],
)
def test_a_damaged_ring_log_errors_the_test_at_setup_before_its_body(rt, damage, summary):
    rt.module(RING_MARKED)
    rt.record().assert_outcomes(passed=1)
    (rt.root / "body-ran").unlink()
    log = rt.root / "cassettes" / "test_mod" / "test_r.dispatch.vrrl"
    data = log.read_bytes()
    assert len(data) == 32 + 64 * 14
    if damage == "truncate":
        log.write_bytes(data[:-10])
    elif damage == "append":
        log.write_bytes(data + b"xxxx")
    elif damage == "magic":
        log.write_bytes(b"\xd4\xb4\xc3V(\xf1\xc5%" + data[8:])
    else:
        log.unlink()
    result = rt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    shown = "cassettes/test_mod/test_r.dispatch.vrrl"
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_r*",
            f"replay_ring_log: {summary.split(': ', 1)[1]}",
            "*test:*test_mod.py::test_r",
            "*cassette:*cassettes/test_mod/test_r.yaml",
            f"*at:*{shown}*",
            f"*Fix: restore {shown} from version control, or re-record: "
            "pytest --replay=record 'test_mod.py::test_r'",
        ]
    )
    out = result.stdout.str()
    assert f"{rt.root}/" not in out  # paths shown relative to the rootdir
    assert "Traceback" not in out
    assert not (rt.root / "body-ran").exists()


def test_a_bad_record_in_a_ring_log_is_found_when_the_test_ends(rt):
    # Reading every record at setup would cost as much as the diff itself:
    # a record's own magic word is checked where the records are read.
    rt.module(RING_MARKED)
    rt.record().assert_outcomes(passed=1)
    log = rt.root / "cassettes" / "test_mod" / "test_r.dispatch.vrrl"
    data = bytearray(log.read_bytes())
    data[32 + 64 * 3 : 32 + 64 * 3 + 4] = b"\x01\x02\x03\x04"
    log.write_bytes(bytes(data))
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "replay_ring_log: record slot 3 has a bad magic word (1 bad slots in all)",
            "*at:*cassettes/test_mod/test_r.dispatch.vrrl slot 3 (byte 224)",
            "*Fix: restore cassettes/test_mod/test_r.dispatch.vrrl from version control*",
        ]
    )


SWAPPABLE = """
import os

def test_r(replay):
    ring = replay.ring("dispatch", capacity=8)
    for op in range(int(os.environ.get("COUNT", "5"))):
        ring.publish(opcode=op + int(os.environ.get("SHIFT", "0")))
"""


def _log_of_another_recording(rt, monkeypatch, env: dict[str, str]) -> tuple[str, str]:
    """Record, keep the cassette, re-record with ``env`` and put the first cassette back."""
    rt.module(SWAPPABLE)
    rt.record().assert_outcomes(passed=1)
    cassette = rt.cassette("test_r")
    first = cassette.read_text()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    rt.record().assert_outcomes(passed=1)
    cassette.write_text(first)  # a merge that took the cassette but not the log
    for key in env:
        monkeypatch.delenv(key)
    return first, "cassettes/test_mod/test_r.dispatch.vrrl"


def test_a_log_with_another_record_count_than_its_cassette_errors_at_setup(rt, monkeypatch):
    _, shown = _log_of_another_recording(rt, monkeypatch, {"COUNT": "7"})
    result = rt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_r*",
            "replay_ring_log: ring log of ring 'dispatch' is not the one this cassette was "
            "recorded with*",
            f"*at:*{shown}",
            "*recorded:*cassette 'rings' entry: 5 records",
            "*current:*log file: 7 record slots",
            f"*Fix: restore the cassette and {shown} from the same commit, or re-record: "
            "pytest --replay=record 'test_mod.py::test_r'",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_a_log_from_another_recording_is_named_as_such_not_as_a_ring_diff(rt, monkeypatch):
    first, shown = _log_of_another_recording(rt, monkeypatch, {"SHIFT": "1"})
    result = rt.run("--replay=strict")  # the test publishes as the cassette says
    result.assert_outcomes(failed=1)
    digest = first.split("digest: ")[1][:16]
    result.stdout.fnmatch_lines(
        [
            "replay_ring_log: ring log of ring 'dispatch' is not the one this cassette was "
            "recorded with*",
            f"*recorded:*cassette 'rings' entry: digest {digest}",
            "*current:*log file: digest *",
            "*the test's stream differs from the log too: *",
            f"*Fix: restore the cassette and {shown} from the same commit*",
        ]
    )
    assert "replay_ring_diff" not in result.stdout.str()


def test_a_changed_stream_with_a_matching_log_is_still_a_ring_diff(rt, monkeypatch):
    rt.module(SWAPPABLE)
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("SHIFT", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*replay_ring_diff:*record 0*opcode*"])
