"""The VRRL0001 ring log: a fixed-capacity circular file of 64-byte slot records."""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import blake3
import numpy as np

from pytest_replay.errors import CapacityError, HeaderMismatch, RingLogError, Truncated

LOG_MAGIC = b"VRRL0001"
LOG_VERSION = 1
RECORD_MAGIC = 0xDEADBEEF
HEADER_BYTES = 32
RECORD_BYTES = 64
RECORD_WORDS = RECORD_BYTES // 4
MAX_RECORDS = 1_048_576
CURSOR_OFFSET = 24

HEADER_DTYPE = np.dtype(
    {
        "names": ["magic", "version", "flags", "capacity", "next_slot"],
        "formats": ["S8", "<u4", "<u4", "<u8", "<u8"],
        "offsets": [0, 8, 12, 16, 24],
        "itemsize": HEADER_BYTES,
    }
)

# Packed on purpose: timestamp_ns sits at byte 4, so an aligned dtype would
# move every later field and break byte compatibility with the Rust writer.
RECORD_DTYPE = np.dtype(
    {
        "names": [
            "magic",
            "timestamp_ns",
            "slot_idx",
            "tenant_id",
            "opcode",
            "args",
            "epoch",
            "slot_status",
            "failure_class",
            "backend_code",
            "output_digest",
        ],
        "formats": [
            "<u4",
            "<u8",
            "<u4",
            "<u4",
            "<u4",
            ("<u4", (4,)),
            "<u4",
            "<u4",
            "<u4",
            "<u4",
            "<u8",
        ],
        "offsets": [0, 4, 12, 16, 20, 24, 40, 44, 48, 52, 56],
        "itemsize": RECORD_BYTES,
    }
)

# One record for struct.pack_into: the same little-endian layout with no padding,
# used where a single record is written and an array operation would cost more.
RECORD_STRUCT = struct.Struct("<IQIII4IIIIIQ")

# Where each field lives in a record seen as sixteen little-endian u32 words;
# the recorder keeps its slot table in this shape because CuPy has no
# structured dtypes.
WORD_SLICES: dict[str, slice] = {
    "magic": slice(0, 1),
    "timestamp_ns": slice(1, 3),
    "slot_idx": slice(3, 4),
    "tenant_id": slice(4, 5),
    "opcode": slice(5, 6),
    "args": slice(6, 10),
    "epoch": slice(10, 11),
    "slot_status": slice(11, 12),
    "failure_class": slice(12, 13),
    "backend_code": slice(13, 14),
    "output_digest": slice(14, 16),
}


class FailureClass(enum.IntEnum):
    """Recovery-oriented failure class stored in a record's failure_class word."""

    NONE = 0
    DEVICE_LOSS = 1
    TRANSIENT_QUEUE = 2
    PROGRAM_BUG = 3
    UNCLASSIFIED = 4

    @classmethod
    def decode(cls, raw: int) -> FailureClass:
        """Map a stored word to a class; words this version does not know are UNCLASSIFIED."""
        try:
            return cls(int(raw))
        except ValueError:
            return cls.UNCLASSIFIED


_THREADED_DIGEST_BYTES = 1 << 20


def digest_bytes(data: bytes | bytearray | memoryview) -> int:
    """The VRRL output digest: the first 8 bytes of blake3(data) as a little-endian u64."""
    # blake3 splits large inputs across threads with the same result; small ones stay inline.
    threads = blake3.blake3.AUTO if memoryview(data).nbytes >= _THREADED_DIGEST_BYTES else 1
    return int.from_bytes(blake3.blake3(data, max_threads=threads).digest()[:8], "little")


def digest_hex(data: bytes | bytearray | memoryview) -> str:
    """The full blake3 hex digest of ``data`` (threaded like digest_bytes)."""
    threads = blake3.blake3.AUTO if memoryview(data).nbytes >= _THREADED_DIGEST_BYTES else 1
    return blake3.blake3(data, max_threads=threads).hexdigest()


@dataclass(frozen=True)
class RecordedSlot:
    """One published ring slot as the log stores it."""

    timestamp_ns: int
    slot_idx: int
    tenant_id: int
    opcode: int
    args: tuple[int, int, int, int] = (0, 0, 0, 0)
    epoch: int = 0

    def to_yaml(self) -> dict[str, Any]:
        return {
            "timestamp_ns": self.timestamp_ns,
            "slot_idx": self.slot_idx,
            "tenant_id": self.tenant_id,
            "opcode": self.opcode,
            "args": list(self.args),
            "epoch": self.epoch,
        }

    @classmethod
    def from_yaml(cls, data: dict[str, Any]) -> RecordedSlot:
        return cls(
            timestamp_ns=int(data["timestamp_ns"]),
            slot_idx=int(data["slot_idx"]),
            tenant_id=int(data["tenant_id"]),
            opcode=int(data["opcode"]),
            args=_four_args(data.get("args", ())),
            epoch=int(data.get("epoch", 0)),
        )


@dataclass(frozen=True)
class FailureEvidence:
    """What a slot left behind when it failed: status, class, backend code, output digest."""

    slot_status: int
    failure_class: FailureClass = FailureClass.UNCLASSIFIED
    backend_code: int = 0
    output_digest: int = 0

    @classmethod
    def from_words(
        cls, slot_status: int, failure_class: int, backend_code: int, output_digest: int
    ) -> FailureEvidence | None:
        """Evidence from the four tail words; all zero means none was recorded."""
        if not (slot_status or failure_class or backend_code or output_digest):
            return None
        return cls(
            int(slot_status),
            FailureClass.decode(failure_class),
            int(backend_code),
            int(output_digest),
        )

    def to_yaml(self) -> dict[str, Any]:
        return {
            "slot_status": self.slot_status,
            "failure_class": self.failure_class.name,
            "backend_code": self.backend_code,
            "output_digest": f"{self.output_digest:016x}",
        }

    @classmethod
    def from_yaml(cls, data: dict[str, Any]) -> FailureEvidence:
        return cls(
            slot_status=int(data["slot_status"]),
            failure_class=FailureClass[data["failure_class"]],
            backend_code=int(data.get("backend_code", 0)),
            output_digest=int(str(data.get("output_digest", "0")), 16),
        )


@dataclass(frozen=True)
class ReplayRecord:
    """A recorded slot together with its failure evidence, if any."""

    slot: RecordedSlot
    failure: FailureEvidence | None = None

    def to_yaml(self) -> dict[str, Any]:
        body = self.slot.to_yaml()
        if self.failure is not None:
            body["failure"] = self.failure.to_yaml()
        return body

    @classmethod
    def from_yaml(cls, data: dict[str, Any]) -> ReplayRecord:
        failure = data.get("failure")
        return cls(
            RecordedSlot.from_yaml(data),
            FailureEvidence.from_yaml(failure) if failure is not None else None,
        )


def _four_args(args: Any) -> tuple[int, int, int, int]:
    values = [int(a) for a in args]
    if len(values) > 4:
        raise ValueError(f"a ring record holds at most 4 args, got {len(values)}")
    values += [0] * (4 - len(values))
    return (values[0], values[1], values[2], values[3])


def empty_records(count: int) -> np.ndarray:
    """A zeroed structured array of ``count`` VRRL records (magic not yet set)."""
    return np.zeros(count, dtype=RECORD_DTYPE)


def records_to_list(records: np.ndarray) -> list[ReplayRecord]:
    """Structured records as ReplayRecord objects (slow path, for people and tests)."""
    out = []
    for row in records.tolist():
        _, ts, slot, tenant, opcode, args, epoch, status, fclass, code, digest = row
        out.append(
            ReplayRecord(
                RecordedSlot(ts, slot, tenant, opcode, tuple(args), epoch),
                FailureEvidence.from_words(status, fclass, code, digest),
            )
        )
    return out


def as_record_array(records: np.ndarray, path: str = "<records>") -> np.ndarray:
    """``records`` in RECORD_DTYPE, C-contiguous, every magic word set."""
    if records.dtype != RECORD_DTYPE:
        names = records.dtype.names or ()
        missing = [n for n in RECORD_DTYPE.names if n not in names and n != "magic"]
        if missing:
            raise RingLogError(
                "records are missing VRRL fields",
                place=path,
                recorded=list(RECORD_DTYPE.names),
                current=list(names),
                fix=f"build the records for {path} with pytest_replay.ring.log.empty_records()",
            )
        converted = empty_records(len(records))
        for name in RECORD_DTYPE.names:
            if name in names:
                converted[name] = records[name]
        records = converted
    records = np.ascontiguousarray(records).reshape(-1)
    if len(records) and not (records["magic"] == RECORD_MAGIC).all():
        records = records.copy()
        records["magic"] = RECORD_MAGIC
    return records


def _validate_capacity(capacity: int, path: str, where: str) -> int:
    if capacity <= 0:
        raise CapacityError(
            f"ring log capacity must be > 0 ({where})",
            place=path,
            current=capacity,
            fix=f"open {path} with at least one slot, or delete it if its header is corrupt",
        )
    if capacity > MAX_RECORDS:
        raise CapacityError(
            f"ring log capacity {capacity} exceeds the maximum {MAX_RECORDS} ({where})",
            place=path,
            recorded=MAX_RECORDS,
            current=capacity,
            fix=f"shard the ring into logs of at most {MAX_RECORDS} records, "
            f"or delete {path} if its header is corrupt",
        )
    return capacity


def _io_error(op: str, path: str, exc: OSError) -> RingLogError:
    return RingLogError(
        f"ring log {op} failed: {exc}",
        place=path,
        fix=f"check disk space and permissions for {path}",
    )


def _read_exact(fh: BinaryIO, offset: int, buf: np.ndarray, path: str, what: str) -> None:
    """Fill ``buf`` from ``offset``; a short read is a Truncated file, not an IO error."""
    view = buf.view(np.uint8).reshape(-1)
    want = view.nbytes
    try:
        fh.seek(offset)
        got = fh.readinto(memoryview(view)) if want else 0
    except OSError as exc:
        raise _io_error("read", path, exc) from exc
    if got != want:
        raise Truncated(
            f"ring log ends inside its {what}",
            place=path,
            recorded=f"{offset + want} bytes",
            current=f"{offset + (got or 0)} bytes",
            fix=f"the file was cut short; re-record it or delete {path}",
        )


class RingLog:
    """A VRRL0001 ring log on disk, read and written as NumPy structured arrays.

    Records go to slot ``cursor`` and the cursor moves on modulo ``capacity``,
    so once the ring wraps the oldest records are overwritten.  The cursor is
    written to the header on every append so a crash never desynchronises it;
    ``sync()`` makes the file durable.
    """

    def __init__(self, fh: BinaryIO, path: str, capacity: int, cursor: int, writable: bool):
        self._fh = fh
        self.path = path
        self._capacity = capacity
        self._cursor = cursor
        self._writable = writable
        self._one = empty_records(1)
        self._cursor_word = np.zeros(1, dtype="<u8")

    # --- opening ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        capacity: int | None = None,
        *,
        readonly: bool = False,
        shown: str | None = None,
    ) -> RingLog:
        """Open the log at ``path``, creating it with ``capacity`` slots if absent.

        An existing log keeps the capacity in its header, and its size must be
        exactly ``32 + 64 * capacity``.  ``readonly`` never creates or writes
        the file; ``capacity`` may then be None.  ``shown`` names the file in
        messages (a path relative to the rootdir); ``path`` by default.
        """
        spath = os.fspath(path)
        name = shown or spath
        if capacity is not None:
            _validate_capacity(int(capacity), name, "requested")
        exists = os.path.exists(spath)
        if not exists:
            if readonly or capacity is None:
                raise RingLogError(
                    "ring log does not exist",
                    place=name,
                    fix=f"record the test first (pytest --replay=record) so {name} is written",
                )
            return cls._create(spath, int(capacity))
        try:
            fh: BinaryIO = open(spath, "rb" if readonly else "r+b", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise _io_error("open", name, exc) from exc
        try:
            cap, cursor = cls._read_header(fh, name)
        except BaseException:
            fh.close()
            raise
        return cls(fh, name, cap, cursor, writable=not readonly)

    @classmethod
    def _create(cls, path: str, capacity: int) -> RingLog:
        try:
            fh: BinaryIO = open(path, "x+b", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise _io_error("create", path, exc) from exc
        try:
            # Zero bytes are the empty-slot sentinel, so a sparse file is a valid empty log.
            fh.truncate(HEADER_BYTES + RECORD_BYTES * capacity)
            fh.seek(0)
            fh.write(_header_bytes(capacity, 0))
        except OSError as exc:
            fh.close()
            raise _io_error("create", path, exc) from exc
        return cls(fh, path, capacity, 0, writable=True)

    @staticmethod
    def _read_header(fh: BinaryIO, path: str) -> tuple[int, int]:
        header = np.zeros(1, dtype=HEADER_DTYPE)
        _read_exact(fh, 0, header, path, "32-byte header")
        magic = bytes(header["magic"][0])
        if magic != LOG_MAGIC:
            raise HeaderMismatch(
                "not a VRRL0001 ring log (bad file magic)",
                place=f"{path} byte 0",
                recorded=LOG_MAGIC.decode(),
                # Printable ASCII as text, anything else as hex: safe in a CI log.
                current=magic.decode()
                if magic.isascii() and magic.decode().isprintable()
                else f"0x{magic.hex()}",
                fix=f"delete or re-record {path}; it is not a ring log or is corrupt",
            )
        version = int(header["version"][0])
        if version != LOG_VERSION:
            raise HeaderMismatch(
                f"ring log version {version} is not supported",
                place=f"{path} byte 8",
                recorded=LOG_VERSION,
                current=version,
                fix=f"re-record {path} with this version of pytest_replay",
            )
        capacity = _validate_capacity(int(header["capacity"][0]), path, "from the file header")
        size = os.fstat(fh.fileno()).st_size
        need = HEADER_BYTES + RECORD_BYTES * capacity
        if size < need:
            raise Truncated(
                f"ring log is shorter than its {capacity} record slots",
                place=path,
                recorded=f"{need} bytes",
                current=f"{size} bytes",
                fix=f"the file was cut short; re-record it or delete {path}",
            )
        if size > need:
            # Bytes past the last slot are no record: an append or a bad merge.
            raise HeaderMismatch(
                f"ring log is longer than its {capacity} record slots",
                place=f"{path} byte {need}",
                recorded=f"{need} bytes",
                current=f"{size} bytes",
                fix=f"the file was appended to or merged badly; re-record it or delete {path}",
            )
        return capacity, int(header["next_slot"][0]) % capacity

    # --- properties -------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def cursor(self) -> int:
        """The next slot to be written (the oldest record once the ring has wrapped)."""
        return self._cursor

    # --- writing ----------------------------------------------------------------------

    def append(self, slot: RecordedSlot) -> None:
        """Append one record without failure evidence."""
        self._append_one(slot, None)

    def append_with_failure(self, slot: RecordedSlot, failure: FailureEvidence) -> None:
        """Append one record carrying failure evidence."""
        self._append_one(slot, failure)

    def _append_one(self, slot: RecordedSlot, failure: FailureEvidence | None) -> None:
        rec = self._one
        tail = (0, 0, 0, 0)
        if failure is not None:
            tail = (
                failure.slot_status,
                int(failure.failure_class),
                failure.backend_code,
                failure.output_digest,
            )
        try:
            rec[0] = (
                RECORD_MAGIC,
                slot.timestamp_ns,
                slot.slot_idx,
                slot.tenant_id,
                slot.opcode,
                _four_args(slot.args),
                slot.epoch,
                *tail,
            )
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"ring record field out of u32/u64 range: {exc}") from exc
        self._write_at(self._cursor, rec)
        self._set_cursor((self._cursor + 1) % self._capacity)

    def append_many(self, records: np.ndarray) -> None:
        """Append a structured array of records in publish order (one or two writes)."""
        records = as_record_array(records, self.path)
        n = len(records)
        if n == 0:
            return
        cap = self._capacity
        # Only the last `cap` records survive a batch that laps the ring.
        keep = min(n, cap)
        tail = records[n - keep :]
        start = (self._cursor + n - keep) % cap
        first = min(keep, cap - start)
        self._write_at(start, tail[:first])
        if first < keep:
            self._write_at(0, tail[first:])
        self._set_cursor((self._cursor + n) % cap)

    def _write_at(self, slot: int, records: np.ndarray) -> None:
        self._check_writable()
        try:
            self._fh.seek(HEADER_BYTES + RECORD_BYTES * slot)
            _write_all(self._fh, records)
        except OSError as exc:
            raise _io_error("write", self.path, exc) from exc

    def _set_cursor(self, cursor: int) -> None:
        self._cursor_word[0] = cursor
        try:
            self._fh.seek(CURSOR_OFFSET)
            self._fh.write(memoryview(self._cursor_word.view(np.uint8)))
        except OSError as exc:
            raise _io_error("write", self.path, exc) from exc
        self._cursor = cursor

    def _check_writable(self) -> None:
        if not self._writable:
            raise RingLogError(
                "ring log was opened read-only",
                place=self.path,
                fix=f"open {self.path} without readonly=True to append",
            )

    # --- reading ----------------------------------------------------------------------

    def records(self) -> np.ndarray:
        """Every live record, oldest first, as a RECORD_DTYPE structured array (a copy)."""
        raw = np.empty(self._capacity, dtype=RECORD_DTYPE)
        _read_exact(self._fh, HEADER_BYTES, raw, self.path, f"{self._capacity} record slots")
        magic = raw["magic"]
        bad = np.flatnonzero((magic != RECORD_MAGIC) & (magic != 0))
        if bad.size:
            slot = int(bad[0])
            raise HeaderMismatch(
                f"record slot {slot} has a bad magic word ({bad.size} bad slots in all)",
                place=f"{self.path} slot {slot} (byte {HEADER_BYTES + RECORD_BYTES * slot})",
                recorded=f"0x{RECORD_MAGIC:08x}",
                current=f"0x{int(magic[slot]):08x}",
                fix=f"the log is corrupt; re-record it or delete {self.path}",
            )
        # Oldest first: the slots from the cursor to the end, then the start.
        c = self._cursor
        ordered = np.concatenate((raw[c:], raw[:c])) if c else raw
        live = ordered["magic"] == RECORD_MAGIC
        return ordered if live.all() else ordered[live]

    def replay_records(self) -> list[ReplayRecord]:
        """Every live record, oldest first, with failure evidence where it was recorded."""
        return records_to_list(self.records())

    def replay_all(self) -> list[RecordedSlot]:
        """Every live slot, oldest first."""
        return [r.slot for r in self.replay_records()]

    # --- lifetime ---------------------------------------------------------------------

    def sync(self) -> None:
        """Flush the log to durable storage (appends do not fsync on their own)."""
        try:
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise _io_error("sync", self.path, exc) from exc

    def close(self) -> None:
        self._fh.close()

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def __enter__(self) -> RingLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RingLog({self.path!r}, capacity={self._capacity}, cursor={self._cursor})"


def _header_bytes(capacity: int, cursor: int) -> bytes:
    header = np.zeros(1, dtype=HEADER_DTYPE)
    header[0] = (LOG_MAGIC, LOG_VERSION, 0, capacity, cursor)
    return header.tobytes()


def read_records(path: str | os.PathLike[str], *, shown: str | None = None) -> np.ndarray:
    """The live records of an existing log, oldest first; never writes the file."""
    with RingLog.open(path, readonly=True, shown=shown) as log:
        return log.records()


def check_log(path: str | os.PathLike[str], *, shown: str | None = None) -> int:
    """Check what is cheap to check without reading the records; returns the capacity.

    The file exists, its 32-byte header has the VRRL0001 magic, version 1
    and a valid capacity, and its size is exactly ``32 + 64 * capacity``.
    The records themselves (each one's magic word) are checked when they
    are read, by ``read_records``.
    """
    with RingLog.open(path, readonly=True, shown=shown) as log:
        return log.capacity


def write_records(
    path: str | os.PathLike[str],
    records: np.ndarray | Sequence[np.ndarray],
    *,
    sync: bool = False,
) -> Path:
    """Write ``records`` (one array, or chunks in order) as a complete VRRL0001 file.

    The file's capacity is the record count, so it holds the whole stream in
    order.  It is written to a sibling temp file and renamed over ``path``;
    ``sync`` fsyncs before the rename for crash durability.
    """
    spath = os.fspath(path)
    chunks = [records] if isinstance(records, np.ndarray) else list(records)
    return write_chunks(path, [as_record_array(c, spath) for c in chunks], sync=sync)


def write_chunks(
    path: str | os.PathLike[str],
    chunks: Iterable[np.ndarray],
    *,
    count: int | None = None,
    sync: bool = False,
) -> Path:
    """write_records for chunks already in RECORD_DTYPE, contiguous, magic set (unchecked).

    ``count`` is the total number of records when ``chunks`` is a one-pass
    iterator; each chunk is written before the next is asked for.
    """
    target = Path(path)
    spath = os.fspath(target)
    if count is None:
        chunks = list(chunks)
        count = sum(len(c) for c in chunks)
    capacity = _validate_capacity(max(count, 1), spath, "records to write")
    header = _header_bytes(capacity, count % capacity)
    # A sibling temp name (ignored as *.tmp) so os.replace stays on one filesystem;
    # os.open honours the umask, unlike mkstemp's 0600.
    tmp = f"{spath}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except OSError as exc:
        raise _io_error("create", spath, exc) from exc
    try:
        with os.fdopen(fd, "wb", buffering=0) as fh:
            fh.write(header)
            written = 0
            for chunk in chunks:
                if len(chunk):
                    # ndarray.tofile (stdio fwrite) measured ~25% faster than
                    # FileIO.write of the same buffer for large chunks.
                    chunk.tofile(fh)
                    written += len(chunk)
            if written != count:
                raise ValueError(f"{written} records were written to {spath}, not {count}")
            if not count:
                fh.write(bytes(RECORD_BYTES))  # one empty slot: capacity is at least 1
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _io_error("write", spath, exc) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return target


def _write_all(fh: BinaryIO, array: np.ndarray) -> None:
    """Write a contiguous array's bytes; unbuffered writes may take less than asked."""
    view = memoryview(array.view(np.uint8).reshape(-1))
    while view.nbytes:
        view = view[fh.write(view) :]


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
