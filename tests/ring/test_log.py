"""VRRL0001 ring log: byte layout, rollover, reopen, corruption and truncation."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import blake3
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_replay.errors import CapacityError, HeaderMismatch, RingLogError, Truncated
from pytest_replay.ring import (
    MAX_RECORDS,
    RECORD_DTYPE,
    FailureClass,
    FailureEvidence,
    RecordedSlot,
    ReplayRecord,
    RingLog,
    output_digest,
    read_records,
    write_records,
)
from pytest_replay.ring.log import check_log, digest_bytes, empty_records

# The Rust writer's layout, spelled independently of RECORD_DTYPE.
_HEADER = struct.Struct("<8sIIQQ")
_RECORD = struct.Struct("<IQIII4IIIIIQ")


def rec(slot_idx: int, epoch: int, tenant: int = 0) -> RecordedSlot:
    return RecordedSlot(
        timestamp_ns=1_000_000 + slot_idx,
        slot_idx=slot_idx,
        tenant_id=tenant,
        opcode=0x4000_0000 + slot_idx,
        args=(slot_idx, slot_idx * 2, slot_idx * 3, slot_idx * 4),
        epoch=epoch,
    )


def write_header(path: Path, capacity: int, cursor: int = 0, *, magic: bytes = b"VRRL0001",
                 version: int = 1, body_records: int | None = None) -> None:  # fmt: skip
    body = capacity if body_records is None else body_records
    path.write_bytes(_HEADER.pack(magic, version, 0, capacity, cursor) + bytes(64 * body))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log.vrrl"


# --- capacity -------------------------------------------------------------------------


def test_zero_capacity_rejected(path: Path) -> None:
    with pytest.raises(CapacityError) as info:
        RingLog.open(path, 0)
    assert not path.exists()
    assert str(path) in info.value.fix


def test_capacity_over_the_maximum_rejected(path: Path) -> None:
    with pytest.raises(CapacityError) as info:
        RingLog.open(path, MAX_RECORDS + 1)
    assert info.value.current == MAX_RECORDS + 1
    assert info.value.recorded == MAX_RECORDS
    assert not path.exists()


def test_maximum_capacity_accepted(path: Path) -> None:
    with RingLog.open(path, MAX_RECORDS) as log:
        assert log.capacity == MAX_RECORDS
    assert path.stat().st_size == 32 + 64 * MAX_RECORDS


@pytest.mark.parametrize("capacity", [0, MAX_RECORDS + 1, 2**63])
def test_capacity_read_from_an_existing_header_is_checked(path: Path, capacity: int) -> None:
    write_header(path, capacity, body_records=4)
    with pytest.raises(CapacityError) as info:
        RingLog.open(path, 4)
    assert "header" in info.value.summary
    assert str(path) in info.value.fix


# --- round trips ----------------------------------------------------------------------


def test_append_and_replay_round_trip(path: Path) -> None:
    with RingLog.open(path, 4) as log:
        log.append(rec(1, 10))
        log.append(rec(2, 11))
        log.sync()
        replay = log.replay_all()
    assert replay == [rec(1, 10), rec(2, 11)]
    assert replay[0].args == (1, 2, 3, 4)


def test_failure_evidence_round_trips(path: Path) -> None:
    failure = FailureEvidence(
        slot_status=3,
        failure_class=FailureClass.DEVICE_LOSS,
        backend_code=17,
        output_digest=digest_bytes(b"partial-output"),
    )
    assert failure.output_digest != 0
    with RingLog.open(path, 4) as log:
        log.append_with_failure(rec(7, 44), failure)
        records = log.replay_records()
    assert records == [ReplayRecord(rec(7, 44), failure)]


def test_no_failure_evidence_when_none_given(path: Path) -> None:
    with RingLog.open(path, 2) as log:
        log.append(rec(1, 10))
        (only,) = log.replay_records()
    assert only.slot.slot_idx == 1
    assert only.failure is None


def test_unknown_failure_class_reads_as_unclassified(path: Path) -> None:
    with RingLog.open(path, 2) as log:
        log.append_with_failure(rec(1, 1), FailureEvidence(5, FailureClass.PROGRAM_BUG))
        raw = log.records()
    raw["failure_class"] = 99
    write_records(path, raw)
    (only,) = RingLog.open(path, 2).replay_records()
    assert only.failure is not None
    assert only.failure.failure_class is FailureClass.UNCLASSIFIED
    assert FailureClass.decode(3) is FailureClass.PROGRAM_BUG


def test_rollover_keeps_the_newest_records_oldest_first(path: Path) -> None:
    with RingLog.open(path, 3) as log:
        for i in range(5):
            log.append(rec(i, 100 + i))
        assert [r.slot_idx for r in log.replay_all()] == [2, 3, 4]
        assert [r.epoch for r in log.replay_all()] == [102, 103, 104]
        assert log.cursor == 2


def test_reopen_restores_the_cursor_and_continues(path: Path) -> None:
    with RingLog.open(path, 4) as log:
        log.append(rec(1, 10))
        log.append(rec(2, 11))
        log.sync()
    # An existing log keeps the capacity in its header, whatever is asked for.
    with RingLog.open(path, 99) as log:
        assert (log.cursor, log.capacity) == (2, 4)
        assert len(log.replay_all()) == 2
        for i in (3, 4, 5):
            log.append(rec(i, 10 + i))
        assert [r.slot_idx for r in log.replay_all()] == [2, 3, 4, 5]
        assert log.cursor == 1


def test_the_cursor_is_on_disk_after_every_append(path: Path) -> None:
    log = RingLog.open(path, 4)
    log.append(rec(1, 1))
    assert _HEADER.unpack(path.read_bytes()[:32])[4] == 1
    log.close()


def test_records_fast_path_agrees_with_replay_records(path: Path) -> None:
    with RingLog.open(path, 8) as log:
        for i in range(11):
            log.append_with_failure(rec(i, i // 8), FailureEvidence(i, FailureClass(i % 5), i))
        fast = log.records()
        slow = log.replay_records()
    assert fast.dtype == RECORD_DTYPE
    assert fast["slot_idx"].tolist() == [r.slot.slot_idx for r in slow]
    assert fast["timestamp_ns"].tolist() == [r.slot.timestamp_ns for r in slow]
    assert fast["slot_status"].tolist() == [r.failure.slot_status if r.failure else 0 for r in slow]


# --- byte compatibility ---------------------------------------------------------------


def test_file_bytes_match_the_vrrl0001_layout(path: Path) -> None:
    slot = RecordedSlot(2**40 + 5, 1, 2, 3, (4, 5, 6, 7), 8)
    failure = FailureEvidence(9, FailureClass.TRANSIENT_QUEUE, 11, 2**63 + 12)
    with RingLog.open(path, 2) as log:
        log.append_with_failure(slot, failure)
    data = path.read_bytes()
    assert len(data) == 32 + 2 * 64
    assert _HEADER.unpack(data[:32]) == (b"VRRL0001", 1, 0, 2, 1)
    expected = _RECORD.pack(0xDEADBEEF, 2**40 + 5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 2, 11, 2**63 + 12)
    assert data[32:96] == expected
    assert data[96:] == bytes(64)


def test_reads_a_file_written_field_by_field(path: Path) -> None:
    body = [_RECORD.pack(0xDEADBEEF, 77 + i, i, 5, 6, 1, 2, 3, 4, 0, 0, 0, 0, 0) for i in (2, 0, 1)]
    path.write_bytes(_HEADER.pack(b"VRRL0001", 1, 0, 3, 1) + b"".join(body))
    # Cursor 1: the oldest record is physical slot 1.
    assert [r.slot_idx for r in RingLog.open(path, 3).replay_all()] == [0, 1, 2]


def test_output_digest_is_the_first_eight_blake3_bytes_little_endian() -> None:
    raw = blake3.blake3(b"partial-output").digest()[:8]
    assert digest_bytes(b"partial-output") == int.from_bytes(raw, "little")
    big = os.urandom(3 << 20)  # the threaded path must agree with the plain one
    assert digest_bytes(big) == int.from_bytes(blake3.blake3(big).digest()[:8], "little")


def test_output_digest_of_an_array_is_over_its_c_order_bytes() -> None:
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert output_digest(a) == digest_bytes(a.tobytes())
    assert output_digest(a.T) == digest_bytes(np.ascontiguousarray(a.T).tobytes())
    assert output_digest(memoryview(a.tobytes())) == output_digest(a)
    with pytest.raises(TypeError):
        output_digest(np.array([object()]))


# --- batches --------------------------------------------------------------------------


def _batch(n: int) -> np.ndarray:
    batch = empty_records(n)
    batch["timestamp_ns"] = 1000 + np.arange(n)
    batch["slot_idx"] = np.arange(n)
    batch["opcode"] = 7
    batch["args"] = np.arange(4 * n).reshape(n, 4)
    return batch


@pytest.mark.parametrize(("cap", "before", "n"), [(8, 0, 5), (8, 6, 5), (4, 1, 11), (5, 0, 5)])
def test_append_many_matches_one_append_at_a_time(
    tmp_path: Path, cap: int, before: int, n: int
) -> None:
    warmup = [rec(100 + i, 0) for i in range(before)]
    batch = _batch(n)
    with RingLog.open(tmp_path / "many.vrrl", cap) as many, \
            RingLog.open(tmp_path / "one.vrrl", cap) as one:  # fmt: skip
        for slot in warmup:
            many.append(slot)
            one.append(slot)
        many.append_many(batch)
        for r in batch.tolist():
            one.append(RecordedSlot(r[1], r[2], r[3], r[4], tuple(r[5]), r[6]))
        assert many.cursor == one.cursor
        assert many.records().tobytes() == one.records().tobytes()
    assert (tmp_path / "many.vrrl").read_bytes() == (tmp_path / "one.vrrl").read_bytes()


def test_append_many_accepts_records_without_magic_or_some_fields(path: Path) -> None:
    partial = np.zeros(3, dtype=[("slot_idx", "<u4"), ("opcode", "<u4"), ("timestamp_ns", "<u8"),
                                 ("tenant_id", "<u4"), ("args", "<u4", (4,)), ("epoch", "<u4"),
                                 ("slot_status", "<u4"), ("failure_class", "<u4"),
                                 ("backend_code", "<u4"), ("output_digest", "<u8")])  # fmt: skip
    partial["slot_idx"] = [0, 1, 2]
    with RingLog.open(path, 4) as log:
        log.append_many(partial)
        assert [r.slot_idx for r in log.replay_all()] == [0, 1, 2]
        with pytest.raises(RingLogError):
            log.append_many(np.zeros(2, dtype=[("opcode", "<u4")]))


def test_write_records_and_read_records_round_trip(path: Path) -> None:
    batch = _batch(6)
    write_records(path, [batch[:2], batch[2:]])
    back = read_records(path)
    assert back["args"].tolist() == batch["args"].tolist()
    assert _HEADER.unpack(path.read_bytes()[:32])[3:] == (6, 0)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_an_empty_stream_is_a_one_slot_log(path: Path) -> None:
    write_records(path, empty_records(0))
    assert path.stat().st_size == 32 + 64
    assert len(read_records(path)) == 0


def test_readonly_open_never_creates(path: Path) -> None:
    with pytest.raises(RingLogError) as info:
        read_records(path)
    assert str(path) in info.value.fix
    assert not path.exists()
    write_records(path, _batch(2))
    with RingLog.open(path, readonly=True) as log, pytest.raises(RingLogError):
        log.append(rec(1, 1))


# --- corruption and truncation --------------------------------------------------------


def test_corrupted_file_magic_rejected(path: Path) -> None:
    write_header(path, 4, magic=b"XXXX0001")
    with pytest.raises(HeaderMismatch) as info:
        RingLog.open(path, 4)
    assert str(path) in info.value.fix
    assert "Fix:" in str(info.value)
    assert info.value.current == "XXXX0001"
    write_header(path, 4, magic=b"\xd4\xb4\xc3V(\xf1\xc5%")  # binary garbage
    with pytest.raises(HeaderMismatch) as info:
        RingLog.open(path, 4)
    assert info.value.current == "0xd4b4c35628f1c525"


def test_wrong_version_rejected(path: Path) -> None:
    write_header(path, 4, version=2)
    with pytest.raises(HeaderMismatch) as info:
        RingLog.open(path, 4)
    assert (info.value.recorded, info.value.current) == (1, 2)


def test_a_record_with_a_bad_magic_is_rejected(path: Path) -> None:
    with RingLog.open(path, 4) as log:
        log.append(rec(1, 1))
        log.append(rec(2, 1))
    data = bytearray(path.read_bytes())
    data[32 + 64 : 32 + 68] = b"\x01\x02\x03\x04"
    path.write_bytes(bytes(data))
    with RingLog.open(path, 4) as log, pytest.raises(HeaderMismatch) as info:
        log.records()
    assert "slot 1" in info.value.place
    assert str(path) in info.value.fix


@pytest.mark.parametrize("size", [0, 7, 31])
def test_a_file_shorter_than_its_header_is_truncated(path: Path, size: int) -> None:
    path.write_bytes(_HEADER.pack(b"VRRL0001", 1, 0, 4, 0)[:size])
    with pytest.raises(Truncated) as info:
        RingLog.open(path, 4)
    assert str(path) in info.value.fix


def test_a_file_shorter_than_its_records_is_truncated(path: Path) -> None:
    write_header(path, 4, body_records=4)
    with path.open("r+b") as fh:
        fh.truncate(32 + 64 * 4 - 1)
    with pytest.raises(Truncated) as info:
        RingLog.open(path, 4)
    assert info.value.recorded == f"{32 + 64 * 4} bytes"


def test_bytes_past_the_last_slot_are_rejected(path: Path) -> None:
    write_header(path, 4, body_records=4)
    with path.open("ab") as fh:
        fh.write(b"xxxx")  # an append or a bad merge
    for read in (lambda: RingLog.open(path, 4), lambda: read_records(path)):
        with pytest.raises(HeaderMismatch) as info:
            read()
        assert "longer than its 4 record slots" in str(info.value)
        assert info.value.place == f"{path} byte {32 + 64 * 4}"
        assert str(path) in info.value.fix


def test_check_log_checks_the_header_and_size_but_not_the_records(path: Path) -> None:
    write_header(path, 4, body_records=4)
    assert check_log(path) == 4
    data = bytearray(path.read_bytes())
    data[32:36] = b"\x01\x02\x03\x04"  # slot 0's magic: found only when records are read
    path.write_bytes(bytes(data))
    assert check_log(path) == 4
    with pytest.raises(HeaderMismatch, match="slot 0"):
        read_records(path)
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(Truncated):
        check_log(path)


def test_messages_name_the_log_as_shown(path: Path) -> None:
    shown = "cassettes/test_m/test_t.r.vrrl"
    write_header(path, 4, body_records=4)
    with path.open("ab") as fh:
        fh.write(b"x")
    for read in (check_log, read_records):
        with pytest.raises(HeaderMismatch) as info:
            read(path, shown=shown)
        assert info.value.place == f"{shown} byte {32 + 64 * 4}"
        assert str(path) not in str(info.value)
    path.unlink()
    with pytest.raises(RingLogError, match="does not exist") as info:
        check_log(path, shown=shown)
    assert info.value.place == shown


def test_sync_fsyncs_the_log(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    with RingLog.open(path, 2) as log:
        log.append(rec(1, 1))
        assert calls == []  # appends alone do not fsync
        log.sync()
        assert len(calls) == 1


def test_context_manager_closes(path: Path) -> None:
    with RingLog.open(path, 2) as log:
        pass
    assert log.closed


# --- data classes ---------------------------------------------------------------------


def test_records_round_trip_through_yaml_dicts() -> None:
    record = ReplayRecord(rec(3, 2, tenant=5), FailureEvidence(1, FailureClass.PROGRAM_BUG, 2, 3))
    assert ReplayRecord.from_yaml(record.to_yaml()) == record
    bare = ReplayRecord(rec(4, 0))
    assert "failure" not in bare.to_yaml()
    assert ReplayRecord.from_yaml(bare.to_yaml()) == bare


# --- fuzz -----------------------------------------------------------------------------


def _open_and_read(path: Path) -> None:
    try:
        with RingLog.open(path, 4) as log:
            log.records()
            log.replay_records()
    except RingLogError:
        pass  # any other exception type fails the test


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=600))
def test_random_bytes_only_raise_ring_log_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.vrrl"
    path.write_bytes(data)
    _open_and_read(path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    capacity=st.one_of(st.integers(0, 8), st.integers(0, 2**64 - 1)),
    cursor=st.integers(0, 2**64 - 1),
    body=st.binary(max_size=700),
)
def test_valid_headers_over_random_bodies_only_raise_ring_log_errors(
    tmp_path: Path, capacity: int, cursor: int, body: bytes
) -> None:
    path = tmp_path / "fuzz.vrrl"
    path.write_bytes(_HEADER.pack(b"VRRL0001", 1, 0, capacity, cursor) + body)
    _open_and_read(path)


_MAGIC_WORDS = st.sampled_from([0, 0xDEADBEEF, 0xDEADBEEF, 0xEFBEADDE])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cursor=st.integers(0, 2**64 - 1),
    records=st.lists(st.tuples(_MAGIC_WORDS, st.binary(min_size=60, max_size=60)), max_size=6),
    cut=st.integers(0, 64),
)
def test_plausible_records_decode_or_raise_ring_log_errors(
    tmp_path: Path, cursor: int, records: list[tuple[int, bytes]], cut: int
) -> None:
    body = b"".join(struct.pack("<I", magic) + rest for magic, rest in records)
    data = _HEADER.pack(b"VRRL0001", 1, 0, max(len(records), 1), cursor) + body
    path = tmp_path / "fuzz.vrrl"
    path.write_bytes(data[: len(data) - cut] if cut < 64 else data)
    _open_and_read(path)
