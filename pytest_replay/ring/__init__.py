"""Ring-slot publish recording: the VRRL0001 log, the device ring recorder and the stream diff."""

from pytest_replay.ring.backend import array_module, output_digest
from pytest_replay.ring.log import (
    MAX_RECORDS,
    RECORD_DTYPE,
    FailureClass,
    FailureEvidence,
    RecordedSlot,
    ReplayRecord,
    RingLog,
    read_records,
    write_records,
)
from pytest_replay.ring.recorder import (
    RingRecorder,
    diff_streams,
    stream_digest,
    streams_equal_ignoring_time,
)

__all__ = [
    "MAX_RECORDS",
    "RECORD_DTYPE",
    "FailureClass",
    "FailureEvidence",
    "RecordedSlot",
    "ReplayRecord",
    "RingLog",
    "RingRecorder",
    "array_module",
    "diff_streams",
    "output_digest",
    "read_records",
    "stream_digest",
    "streams_equal_ignoring_time",
    "write_records",
]
