"""Ring recorder: slots, epochs, completion, drains, tenant scoping and the stream diff."""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_replay.errors import CapacityError
from pytest_replay.ring import (
    MAX_RECORDS,
    RECORD_DTYPE,
    FailureClass,
    FailureEvidence,
    RingLog,
    RingRecorder,
    array_module,
    backend,
    diff_streams,
    output_digest,
    read_records,
    stream_digest,
    streams_equal_ignoring_time,
)
from pytest_replay.ring import recorder as recorder_module


def ticking_clock(start: int = 1_700_000_000_000_000_000) -> Any:
    counter = itertools.count(start, 1000)
    return lambda: next(counter)


def ring(capacity: int, xp: Any = np, **kwargs: Any) -> RingRecorder:
    return RingRecorder("dispatch", capacity, xp, clock=ticking_clock(), **kwargs)


def fields(stream: np.ndarray, *names: str) -> list[tuple[Any, ...]]:
    return [tuple(np.asarray(row[n]).tolist() for n in names) for row in stream]


# --- slots and epochs -----------------------------------------------------------------


def test_publish_returns_the_slot_and_epochs_count_wraps() -> None:
    r = ring(3)
    slots = [r.publish(opcode=7, tenant=1, args=(i,)) for i in range(7)]
    assert slots == [0, 1, 2, 0, 1, 2, 0]
    stream = r.stream()
    assert stream.dtype == RECORD_DTYPE
    assert stream["slot_idx"].tolist() == slots
    assert stream["epoch"].tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert stream["args"][:, 0].tolist() == list(range(7))
    assert (stream["magic"] == 0xDEADBEEF).all()
    assert (r.cursor, r.epoch, r.published, len(r)) == (1, 2, 7, 7)


def test_args_are_padded_to_four_and_checked() -> None:
    r = ring(4)
    r.publish(1, args=(1, 2))
    r.publish(1, args=[1, 2, 3, 4])
    assert r.stream()["args"].tolist() == [[1, 2, 0, 0], [1, 2, 3, 4]]
    with pytest.raises(ValueError, match="at most 4 args"):
        r.publish(1, args=(1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match=re.escape("0..2**32-1")):
        r.publish(-1)
    with pytest.raises(ValueError):
        r.publish(1, tenant=2**32)
    assert r.published == 2  # a rejected publish takes no slot


@pytest.mark.parametrize("capacity", [0, -1, MAX_RECORDS + 1])
def test_capacity_is_checked(capacity: int) -> None:
    with pytest.raises(CapacityError) as info:
        RingRecorder("dispatch", capacity, np)
    assert "replay.ring('dispatch'" in info.value.fix


def test_the_stream_limit_is_enforced_at_publish_not_at_save(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = ring(4)
    with pytest.raises(CapacityError) as info:  # the real limit, checked before any work
        r.publish_many(np.zeros(MAX_RECORDS + 1, dtype=np.uint32))
    assert f"would hold {MAX_RECORDS + 1} records" in str(info.value)
    assert "several rings" in info.value.fix and r.published == 0
    monkeypatch.setattr(recorder_module, "MAX_RECORDS", 10)
    r.publish_many(np.arange(8))
    with pytest.raises(CapacityError, match="would hold 11 records"):
        r.publish_many(np.arange(3))
    r.publish(8)
    r.publish(9)
    with pytest.raises(CapacityError) as info:
        r.publish(10)
    assert info.value.place == "ring 'dispatch' publish #11"
    assert r.stream()["opcode"].tolist() == list(range(10))  # nothing half-published


def test_timestamps_are_recorded_from_the_clock() -> None:
    r = ring(4)
    r.publish(1)
    r.publish_many(np.array([2, 3]))
    ts = r.stream()["timestamp_ns"].tolist()
    assert ts == [1_700_000_000_000_000_000, 1_700_000_000_000_001_000, 1_700_000_000_000_001_000]
    real = RingRecorder("wall", 2, np)
    real.publish(1)
    assert real.stream()["timestamp_ns"][0] > 1_600_000_000 * 10**9


@pytest.fixture
def fresh_default() -> Any:
    """Forget the cached default array module before and after the test."""
    backend._default_module.cache_clear()
    yield
    backend._default_module.cache_clear()


def test_the_default_module_is_numpy_without_cupy(
    fresh_default: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    assert array_module() is np
    assert RingRecorder("r", 2).xp is np
    assert array_module("numpy") is np
    with pytest.raises(ValueError):
        array_module("torch")


def test_the_default_module_is_cupy_when_it_sees_a_device(
    fresh_default: None, fake_cupy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert array_module() is fake_cupy
    monkeypatch.setattr(fake_cupy, "is_available", lambda: False)
    backend._default_module.cache_clear()
    assert array_module() is np


# --- publish_many ---------------------------------------------------------------------


def _one_by_one(capacity: int, plan: list[tuple[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Run the same publishes through publish_many and publish; return both streams."""
    many, single = ring(capacity), ring(capacity)
    for kind, batch in plan:
        if kind == "one":
            many.publish(*batch)
            single.publish(*batch)
            continue
        ops, tenants, args = batch
        got = many.publish_many(ops, tenants, args)
        expected = []
        for i in range(len(ops)):
            t = tenants if np.ndim(tenants) == 0 else tenants[i]
            a = () if args is None else (args if np.ndim(args) == 1 else args[i])
            expected.append(single.publish(int(ops[i]), int(t), tuple(int(x) for x in a)))
        assert got.tolist() == expected
    return many.stream(), single.stream()


@pytest.mark.parametrize("capacity", [1, 3, 8, 64])
def test_publish_many_equals_publishing_one_at_a_time(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    n = 40
    plan = [
        ("one", (9, 1, (1, 2))),
        ("many", (rng.integers(0, 2**32, n, dtype=np.uint64), rng.integers(0, 5, n), None)),
        ("one", (8, 2, ())),
        ("many", (np.arange(5, dtype=np.int32), 3, np.arange(10).reshape(5, 2))),
        ("many", (np.arange(7), np.arange(7), (1, 2, 3, 4))),
        ("many", (np.array([], dtype=np.uint32), 0, None)),
    ]
    many, single = _one_by_one(capacity, plan)
    assert streams_equal_ignoring_time(many, single)
    assert len(many) == 1 + n + 1 + 5 + 7


def test_publish_many_crosses_host_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "_HOST_BLOCK_ROWS", 3)
    ops = np.arange(20)
    many, single = _one_by_one(8, [("many", (ops, ops % 4, np.stack([ops, ops * 2], axis=1)))])
    assert streams_equal_ignoring_time(many, single)


@pytest.mark.parametrize("reading", [-1, 2**64, 1.5e18])
def test_a_clock_outside_the_vrrl_range_is_named_not_blamed_on_the_args(reading: Any) -> None:
    r = RingRecorder("dispatch", 4, np, clock=lambda: reading)
    with pytest.raises(ValueError, match=r"ring 'dispatch': the clock read .* before 1970"):
        r.publish(1, 2, (3,))
    with pytest.raises(ValueError, match=r"the clock read"):
        r.publish_many(np.arange(3))
    assert len(r) == 0  # nothing half-published


@pytest.mark.parametrize("template_rows", [0, 2, 8192])
def test_publish_many_writes_the_timestamp_and_slot_of_every_row(
    monkeypatch: pytest.MonkeyPatch, template_rows: int
) -> None:
    # The timestamp's high word and slot_idx share one uint64 store built from a
    # cached row template; blocks longer than the template build their own.
    monkeypatch.setattr(recorder_module, "_HOST_BLOCK_ROWS", 5)
    monkeypatch.setattr(recorder_module, "_PARALLEL_FILL_ROWS", 4)
    monkeypatch.setattr(recorder_module, "_fill_threads", lambda: 2)
    template = np.arange(template_rows, dtype=np.uint64) << np.uint64(32)
    monkeypatch.setattr(recorder_module, "_SLOT_HIGH", template)
    clock = (2**30 + 7) * 2**32 + 12345  # both timestamp words non-zero
    r = RingRecorder("dispatch", 16, np, clock=lambda: clock)
    r.publish(1)
    r.publish_many(np.arange(37))
    stream = r.stream()
    assert stream["timestamp_ns"].tolist() == [clock] * 38
    assert stream["slot_idx"].tolist() == [i % 16 for i in range(38)]
    assert stream["epoch"].tolist() == [i // 16 for i in range(38)]
    assert stream["opcode"].tolist() == [1, *range(37)]


@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("capacity", [7, 64])
def test_publish_many_split_over_threads_equals_one_by_one(
    monkeypatch: pytest.MonkeyPatch, threads: int, capacity: int
) -> None:
    monkeypatch.setattr(recorder_module, "_HOST_BLOCK_ROWS", 2)
    monkeypatch.setattr(recorder_module, "_PARALLEL_FILL_ROWS", 4)
    monkeypatch.setattr(recorder_module, "_fill_threads", lambda: threads)
    started: list[str] = []
    real_fill = recorder_module.RingRecorder._fill

    def fill(self: Any, *a: Any) -> None:
        started.append(threading.current_thread().name)
        real_fill(self, *a)

    monkeypatch.setattr(recorder_module.RingRecorder, "_fill", fill)
    before = threading.active_count()
    ops = np.arange(50)
    plan = [
        ("many", (ops, ops % 4, np.stack([ops, ops * 2], axis=1))),  # wraps: epochs 0..7
        ("one", (9, 1, (1, 2))),
        ("many", (ops[:30], 5, (7, 8, 9))),
    ]
    many, single = _one_by_one(capacity, plan)
    assert streams_equal_ignoring_time(many, single)
    # the helpers really filled blocks, and none outlives the call
    assert set(started) == {threading.main_thread().name, recorder_module._FILL_THREAD_NAME}
    assert threading.active_count() == before


def test_an_error_in_a_fill_thread_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "_HOST_BLOCK_ROWS", 2)
    monkeypatch.setattr(recorder_module, "_PARALLEL_FILL_ROWS", 4)
    monkeypatch.setattr(recorder_module, "_fill_threads", lambda: 2)
    real_fill = recorder_module.RingRecorder._fill

    def fill(self: Any, first: int, *a: Any) -> None:
        if first >= 10:  # only the helper's share
            raise MemoryError("helper failed")
        real_fill(self, first, *a)

    monkeypatch.setattr(recorder_module.RingRecorder, "_fill", fill)
    before = threading.active_count()
    with pytest.raises(MemoryError, match="helper failed"):
        ring(64).publish_many(np.arange(20))
    assert threading.active_count() == before


def test_a_helper_that_cannot_start_is_filled_by_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python 3.12+ refuses new threads at interpreter shutdown, and a process
    # limit can too: the batch must still be filled, and no helper outlive it.
    monkeypatch.setattr(recorder_module, "_HOST_BLOCK_ROWS", 2)
    monkeypatch.setattr(recorder_module, "_PARALLEL_FILL_ROWS", 4)
    monkeypatch.setattr(recorder_module, "_fill_threads", lambda: 4)
    real_start = threading.Thread.start
    starts = []

    def start(self: threading.Thread) -> None:
        starts.append(self.name)
        if len(starts) == 2:
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    before = threading.active_count()
    ops = np.arange(40)
    many, single = _one_by_one(64, [("many", (ops, ops % 3, None))])
    assert streams_equal_ignoring_time(many, single)
    assert len(starts) == 3 and threading.active_count() == before


def test_fill_threads_follow_the_usable_cpus() -> None:
    assert 1 <= recorder_module._fill_threads() <= recorder_module._MAX_FILL_THREADS


def test_publish_many_checks_its_arguments() -> None:
    r = ring(4)
    with pytest.raises(ValueError, match=re.escape("0..2**32-1")):
        r.publish_many(np.array([1, -1]))
    with pytest.raises(ValueError, match=re.escape("0..2**32-1")):
        r.publish_many(np.array([2**32]))
    with pytest.raises(TypeError, match="integers"):
        r.publish_many(np.array([1.5]))
    with pytest.raises(ValueError, match="1-D"):
        r.publish_many(np.zeros((2, 2), dtype=np.uint32))
    with pytest.raises(ValueError, match="tenants"):
        r.publish_many(np.arange(3), np.arange(2))
    with pytest.raises(ValueError, match="args"):
        r.publish_many(np.arange(3), 0, np.zeros((3, 5), dtype=np.uint32))
    with pytest.raises(ValueError, match="args"):
        r.publish_many(np.arange(3), 0, np.zeros((2, 4), dtype=np.uint32))
    assert r.published == 0


# --- complete -------------------------------------------------------------------------


def test_complete_sets_status_failure_and_digest() -> None:
    r = ring(4)
    out = np.linspace(0, 1, 10, dtype=np.float32)
    a = r.publish(1)
    b = r.publish(2)
    c = r.publish(3)
    r.complete(a, status=2, output=out)
    r.complete(b, status=5, error=FailureEvidence(5, FailureClass.DEVICE_LOSS, 17, 0xABC))
    r.complete(c, status=6, output=b"bytes", error=FailureClass.PROGRAM_BUG, backend_code=9)
    rows = fields(r.stream(), "slot_status", "failure_class", "backend_code", "output_digest")
    assert rows == [
        (2, 0, 0, output_digest(out)),
        (5, 1, 17, 0xABC),
        (6, 3, 9, output_digest(b"bytes")),
    ]


def test_complete_refuses_arguments_that_contradict_the_failure_evidence() -> None:
    r = ring(4)
    slot = r.publish(1)
    evidence = FailureEvidence(5, FailureClass.DEVICE_LOSS, 17, output_digest(b"out"))
    for kwargs, what in [
        ({"status": 0}, "status=0"),
        ({"status": 5, "backend_code": 3}, "backend_code=3"),
        ({"status": 5, "output": b"other"}, "the digest of output="),
    ]:
        with pytest.raises(ValueError, match=re.escape(what) + ".*FailureEvidence says"):
            r.complete(slot, error=evidence, **kwargs)
    r.complete(slot, status=5, output=b"out", backend_code=17, error=evidence)  # agreeing
    assert fields(r.stream(), "slot_status", "backend_code")[0] == (5, 17)


def test_complete_reaches_records_wherever_they_are() -> None:
    r = ring(4)
    r.publish(1)  # will be drained to the host
    r.drain()
    r.publish(2)  # will be in the slot table
    r.slots  # noqa: B018  (flushes staged publishes to the table)
    r.publish(3)  # still staged
    for slot, status in ((0, 10), (1, 11), (2, 12)):
        r.complete(slot, status=status)
    assert r.stream()["slot_status"].tolist() == [10, 11, 12]


def test_complete_targets_the_latest_publish_into_a_slot() -> None:
    r = ring(2)
    for op in range(5):
        r.publish(op)
    r.complete(1, status=7)  # slot 1 last took publish #3
    assert r.stream()["slot_status"].tolist() == [0, 0, 0, 7, 0]


def test_complete_rejects_slots_never_published_and_bad_words() -> None:
    r = ring(4)
    r.publish(1)
    for slot in (1, 4, -1):
        with pytest.raises(ValueError, match="has not been published"):
            r.complete(slot, status=1)
    with pytest.raises(ValueError, match="status"):
        r.complete(0, status=-1)
    with pytest.raises(ValueError, match="backend_code"):
        r.complete(0, status=1, backend_code=2**32)


def test_complete_takes_slots_returned_by_publish_many() -> None:
    r = ring(8)
    slots = r.publish_many(np.arange(5))
    r.complete(slots[3], status=4)
    assert r.stream()["slot_status"].tolist() == [0, 0, 0, 4, 0]


# --- drains and the stream ------------------------------------------------------------


def test_the_stream_keeps_every_publish_past_many_wraps() -> None:
    r = ring(4)
    for i in range(10):
        r.publish(i)
    r.publish_many(np.arange(10, 23))
    stream = r.stream()
    assert stream["opcode"].tolist() == list(range(23))
    assert stream["epoch"].tolist() == [i // 4 for i in range(23)]


@pytest.mark.parametrize("capacity", [1, 3, 70_000])
def test_the_host_table_starts_zeroed_at_the_files_cache_line_phase(capacity: int) -> None:
    r = ring(capacity)
    table = r.slots
    # Rows sit where records sit in a .vrrl (offset 32 + 64*i), so write_log's
    # single write is cache-line aligned on both sides.
    assert (table.ctypes.data - 32) % 64 == 0
    assert table.shape == (capacity, 16) and not table.any()
    r.publish_many(np.arange(min(capacity, 2)) + 5)
    # Rows past the cursor still read as empty slots (epoch 0, no evidence).
    assert not table[2:].any()
    assert r.stream()["epoch"].tolist() == [0] * min(capacity, 2)


def test_drain_moves_pending_slots_in_batches() -> None:
    r = ring(8)
    r.publish_many(np.arange(5))
    before = r.stream()
    assert r.drain() == 5
    assert r.drain() == 0
    assert r.stream().tobytes() == before.tobytes()


def test_stream_is_a_snapshot() -> None:
    r = ring(4)
    r.publish(1)
    snap = r.stream()
    r.complete(0, status=9)
    assert snap["slot_status"][0] == 0


# --- tenant scoping -------------------------------------------------------------------


def test_tenant_scoping_never_leaks_another_tenants_records() -> None:
    r = ring(16)
    rng = np.random.default_rng(7)
    tenants = rng.choice([0, 3, 5, 2**32 - 1], size=200)
    r.publish_many(np.arange(200), tenants, np.stack([tenants] * 4, axis=1))
    for i in range(6):
        r.publish(1000 + i, tenant=3, args=(3, 3, 3, 3))
    planted = {t: int((tenants == t).sum()) + (6 if t == 3 else 0) for t in (0, 3, 5, 2**32 - 1)}
    for tenant, count in planted.items():
        mine = r.records(tenant=tenant)
        assert len(mine) == count
        assert (mine["tenant_id"] == tenant).all()
        assert (mine["args"] == tenant).all()  # payload words belong to the tenant too
    assert len(r.records(tenant=4)) == 0
    assert len(r.records()) == 206
    with pytest.raises(TypeError):
        r.records(tenant="3")  # type: ignore[arg-type]


# --- writing the log ------------------------------------------------------------------


def test_write_log_round_trips_as_a_vrrl_file(tmp_path: Path) -> None:
    r = ring(4)
    for i in range(6):
        r.publish(i, tenant=i % 2, args=(i, i))
    r.complete(1, status=3, output=np.ones(3))
    path = tmp_path / "test.dispatch.vrrl"
    assert r.write_log(path) is True
    back = read_records(path)
    assert back.tobytes() == r.stream().tobytes()
    with RingLog.open(path, readonly=True) as log:
        assert (log.capacity, log.cursor) == (6, 0)
        assert [s.opcode for s in log.replay_all()] == list(range(6))


def test_a_rerecord_that_changes_only_timestamps_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "test.dispatch.vrrl"
    first = RingRecorder("dispatch", 4, np, clock=ticking_clock(1))
    first.publish_many(np.arange(6), 1)
    first.write_log(path)
    before = path.read_bytes()
    again = RingRecorder("dispatch", 4, np, clock=ticking_clock(10**18))
    again.publish_many(np.arange(6), 1)
    assert again.write_log(path) is False
    assert path.read_bytes() == before
    changed = RingRecorder("dispatch", 4, np, clock=ticking_clock(1))
    changed.publish_many(np.arange(6), 2)
    assert changed.write_log(path) is True
    assert read_records(path)["tenant_id"].tolist() == [2] * 6


def test_a_log_with_spare_empty_slots_is_rewritten_to_the_streams_size(tmp_path: Path) -> None:
    # Same records, but 8 slots for 5 of them: the cassette says 5, so keeping
    # the file would fail every replay at setup, and re-recording could not fix it.
    path = tmp_path / "test.dispatch.vrrl"
    ring = RingRecorder("dispatch", 8, np)
    ring.publish_many(np.arange(5), 1)
    with RingLog.open(path, capacity=8) as log:
        log.append_many(ring.stream())
    assert streams_equal_ignoring_time(read_records(path), ring.stream())
    assert ring.write_log(path) is True
    assert path.stat().st_size == 32 + 64 * 5
    assert ring.write_log(path) is False  # now the right size: kept


def test_write_log_replaces_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "test.dispatch.vrrl"
    path.write_bytes(b"garbage")
    r = ring(2)
    r.publish(1)
    assert r.write_log(path) is True
    assert len(read_records(path)) == 1


# --- stream diff ----------------------------------------------------------------------


def _stream(n: int = 6, clock_start: int = 1) -> np.ndarray:
    r = RingRecorder("dispatch", 16, np, clock=ticking_clock(clock_start))
    for i in range(n):
        r.publish(i, tenant=i % 3, args=(i, 2 * i))
    r.complete(2, status=1, output=b"out")
    return r.stream()


def test_equal_streams_pass_and_timestamps_are_ignored() -> None:
    result = diff_streams(_stream(), _stream(clock_start=99**9), "dispatch")
    assert result.ok
    assert streams_equal_ignoring_time(_stream(), _stream(clock_start=5))


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("slot_idx", 9, 9),
        ("tenant_id", 9, 9),
        ("opcode", 9, 9),
        ("args", [9, 9, 9, 9], [9, 9, 9, 9]),
        ("epoch", 9, 9),
        ("slot_status", 9, 9),
        ("failure_class", 2, "TRANSIENT_QUEUE"),
        ("backend_code", 9, 9),
        ("output_digest", 2**40, f"0x{2**40:016x}"),
    ],
)
def test_each_field_difference_is_named(field: str, value: Any, shown: Any) -> None:
    recorded, current = _stream(), _stream()
    current[field][4] = value
    result = diff_streams(recorded, current, "dispatch")
    assert not result.ok
    assert result.kind == "replay_ring_diff"
    assert result.place == f"ring 'dispatch' record 4 field {field}"
    assert result.current == shown
    assert result.payload["differing"] == 1
    assert result.payload["diffs"][0]["fields"] == [field]
    assert not streams_equal_ignoring_time(recorded, current)


def test_the_first_differing_record_and_the_count_are_reported() -> None:
    recorded, current = _stream(), _stream()
    current["opcode"][[1, 3, 5]] = 77
    current["epoch"][3] = 8
    result = diff_streams(recorded, current, "dispatch", max_records=2)
    assert result.place == "ring 'dispatch' record 1 field opcode"
    assert (result.recorded, result.current) == (1, 77)
    assert result.payload["differing"] == 3
    assert [d["index"] for d in result.payload["diffs"]] == [1, 3]
    assert result.payload["diffs"][1]["fields"] == ["opcode", "epoch"]
    assert any("3 differ" in line for line in result.details)
    json.dumps(result.payload)  # the plugin persists it


def test_a_different_record_count_is_a_diff() -> None:
    recorded, current = _stream(6), _stream(8)
    result = diff_streams(recorded, current, "dispatch")
    assert not result.ok
    assert (result.recorded, result.current) == (6, 8)
    assert "record count" in result.place
    assert result.payload["differing"] == 2
    assert [e["index"] for e in result.payload["extra"]] == [6, 7]
    shorter = diff_streams(current, recorded, "dispatch")
    assert shorter.payload["extra"][0]["recorded"]["opcode"] == 6
    json.dumps(result.payload)


def test_a_count_difference_after_a_field_difference_mentions_both() -> None:
    recorded, current = _stream(6), _stream(7)
    current["tenant_id"][0] = 9
    result = diff_streams(recorded, current, "dispatch")
    assert result.place == "ring 'dispatch' record 0 field tenant_id"
    assert result.payload["differing"] == 2
    assert any("only in the current stream" in line for line in result.details)


def test_recorder_diff_against_a_recorded_log(tmp_path: Path) -> None:
    path = tmp_path / "t.dispatch.vrrl"
    ring_a = ring(4)
    ring_a.publish_many(np.arange(10), 1)
    ring_a.write_log(path)
    ring_b = ring(4)
    ring_b.publish_many(np.arange(10), 1)
    assert ring_b.diff(read_records(path)).ok
    ring_b.publish(3)
    assert not ring_b.diff(read_records(path)).ok


# --- the device code path, on a fake device and on a real one -------------------------


def _device_workout(xp: Any) -> tuple[np.ndarray, Any]:
    r = RingRecorder("dispatch", 5, xp, clock=ticking_clock())
    r.publish(1, tenant=2, args=(3,))
    r.publish_many(xp.asarray(np.arange(12, dtype=np.uint32)), xp.asarray(np.arange(12) % 3))
    r.complete(r.publish(99), status=4, output=xp.asarray(np.arange(6, dtype=np.float32)))
    r.drain()
    r.publish_many(np.arange(3), 1, np.ones((3, 4), dtype=np.uint32))
    r.complete(0, status=5)
    return r.stream(), r


def test_the_device_path_matches_numpy_on_a_fake_device(
    fake_cupy: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(recorder_module, "_BOUNCE_ROWS", 2)  # several pinned batches per drain
    undrained = RingRecorder("dispatch", 5, fake_cupy, clock=ticking_clock())
    undrained.publish_many(np.arange(4))
    undrained.publish(9)
    undrained.write_log(tmp_path / "undrained.vrrl")  # streamed through the bounce buffer
    assert read_records(tmp_path / "undrained.vrrl")["opcode"].tolist() == [0, 1, 2, 3, 9]
    on_device, r = _device_workout(fake_cupy)
    r.write_log(tmp_path / "fake.vrrl")
    assert read_records(tmp_path / "fake.vrrl").tobytes() == on_device.tobytes()
    assert isinstance(r.slots, fake_cupy.ndarray)
    on_host, _ = _device_workout(np)
    assert on_device.tobytes() == on_host.tobytes()
    digest = on_device["output_digest"][13]
    assert digest == output_digest(np.arange(6, dtype=np.float32))


def _many_single_publishes(xp: Any) -> np.ndarray:
    # More than the staging buffer holds, on a ring that does not fill up (a
    # full ring drains, which waits for the copies): the stage is refilled
    # right after each flush, while the copy may still be reading it.
    r = ring(recorder_module._STAGE_ROWS * 3, xp)
    for i in range(recorder_module._STAGE_ROWS * 2 + 5):
        r.publish(100 + i, i % 7, (i, 0, 0, i))
    return r.stream()


def test_single_publishes_survive_the_asynchronous_stage_copy(fake_cupy: Any) -> None:
    on_device = _many_single_publishes(fake_cupy)
    assert on_device["opcode"].tolist() == [100 + i for i in range(len(on_device))]
    assert on_device.tobytes() == _many_single_publishes(np).tobytes()


@pytest.mark.gpu
def test_single_publishes_survive_the_stage_copy_on_a_gpu(gpu: Any) -> None:
    with gpu.cuda.Stream(non_blocking=True):  # asynchronous copies in any CuPy version
        on_device = _many_single_publishes(gpu)
    assert on_device.tobytes() == _many_single_publishes(np).tobytes()


@pytest.mark.gpu
def test_the_device_path_matches_numpy_on_a_gpu(gpu: Any, tmp_path: Path) -> None:
    on_device, r = _device_workout(gpu)
    assert isinstance(r.slots, gpu.ndarray)
    on_host, _ = _device_workout(np)
    assert on_device.tobytes() == on_host.tobytes()
    r.write_log(tmp_path / "gpu.vrrl")
    assert read_records(tmp_path / "gpu.vrrl").tobytes() == on_device.tobytes()


@pytest.mark.gpu
def test_device_output_digest_equals_the_host_digest(gpu: Any) -> None:
    host = np.random.default_rng(0).standard_normal((256, 300)).astype(np.float32)
    assert output_digest(gpu.asarray(host)) == output_digest(host)
    assert output_digest(gpu.asarray(host).T) == output_digest(np.ascontiguousarray(host.T))


@pytest.mark.gpu
def test_gpu_default_module_is_cupy(gpu: Any) -> None:
    assert RingRecorder("r", 4).xp is gpu


def test_the_diff_finds_records_in_every_comparison_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "_DIFF_BLOCK_ROWS", 2)
    recorded, current = _stream(9), _stream(9)
    current["args"][[2, 3, 8], 1] = 1234
    result = diff_streams(recorded, current, "dispatch")
    assert [d["index"] for d in result.payload["diffs"]] == [2, 3, 8]
    assert not streams_equal_ignoring_time(recorded, current)
    current["timestamp_ns"] += 1
    assert not streams_equal_ignoring_time(recorded, current)
    assert streams_equal_ignoring_time(recorded, _stream(9, clock_start=3))


def test_the_stream_digest_ignores_timestamps_only() -> None:
    base = stream_digest(_stream())
    assert len(base) == 64
    assert stream_digest(_stream(clock_start=10**15)) == base
    changed = _stream()
    changed["output_digest"][1] ^= 1
    assert stream_digest(changed) != base
    assert stream_digest(_stream(7)) != base


def test_the_device_is_synchronised_after_zeroing_and_before_each_read(fake_cupy: Any) -> None:
    # Ring kernels run on the stream current at each call; a device-wide sync
    # orders them with the zeroing and with the reads on any other stream.
    from . import conftest

    r = RingRecorder("dispatch", 6, fake_cupy, clock=ticking_clock())
    assert conftest.synchronized == [(6, 16)]  # the zeroed table
    r.publish_many(np.arange(4))
    assert len(conftest.synchronized) == 1  # publishing queues work, waits for nothing
    r.drain()
    assert len(conftest.synchronized) == 2 and conftest.synchronized[-1] == (4, 16)
    r.publish_many(np.arange(3))  # wraps: the ring drains the rows it overwrites
    assert r.stream()["opcode"].tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert len(conftest.synchronized) > 2


def test_cupy_scalars_are_taken_as_ints_by_publish_and_complete(fake_cupy: Any) -> None:
    # ops[i] of a CuPy array is a 0-d device array, refused by struct as it is.
    r = RingRecorder("dispatch", 4, fake_cupy, clock=ticking_clock())
    scalar = fake_cupy.asarray
    slot = r.publish(scalar(7), scalar(3), (scalar(1), 2))
    r.complete(scalar(slot), status=scalar(2), backend_code=scalar(9))
    with pytest.raises(ValueError, match="opcode, tenant and args must be integers"):
        r.publish(fake_cupy.asarray([1, 2]))  # not a scalar: still refused, no recursion
    rec = r.stream()[0]
    assert (int(rec["opcode"]), int(rec["tenant_id"]), rec["args"].tolist()) == (7, 3, [1, 2, 0, 0])
    assert (int(rec["slot_status"]), int(rec["backend_code"])) == (2, 9)
