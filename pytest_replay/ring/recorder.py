"""A ring of publish slots kept on the array module's device, drained to a host VRRL stream."""

from __future__ import annotations

import functools
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from pytest_replay.compare.result import Comparison
from pytest_replay.errors import CapacityError, RingLogError
from pytest_replay.ring import backend
from pytest_replay.ring.log import (
    HEADER_BYTES,
    MAX_RECORDS,
    RECORD_BYTES,
    RECORD_DTYPE,
    RECORD_MAGIC,
    RECORD_STRUCT,
    RECORD_WORDS,
    FailureClass,
    FailureEvidence,
    as_record_array,
    check_log,
    read_records,
    write_chunks,
)

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_STAGE_ROWS = 4096
_BOUNCE_ROWS = 1 << 18  # 16 MiB of pinned memory per drain batch
_HOST_BLOCK_ROWS = 8192  # 512 KiB: publish_many fills host tables in cache-sized blocks
# A host batch this large is filled by several threads (NumPy drops the GIL in
# its copy loops); below it, handing blocks to threads costs more than it saves.
_PARALLEL_FILL_ROWS = 1 << 17
_MAX_FILL_THREADS = 4
# Row i of a host block as the high word of a uint64: adding (first << 32 | the
# timestamp's high word) gives record words 2-3 (timestamp high, slot_idx) of
# row first + i in one strided store.
_SLOT_HIGH = np.arange(_HOST_BLOCK_ROWS, dtype=np.uint64) << np.uint64(32)
_FILL_THREAD_NAME = "pytest-replay-ring-fill"

# The u32 words of a record that take part in a diff: everything after the
# magic word and the two timestamp words.
_DIFF_FIRST_WORD = 3
_DIFF_BLOCK_ROWS = 16384
_WORD_FIELD = (
    ["magic", "timestamp_ns", "timestamp_ns", "slot_idx", "tenant_id", "opcode"]
    + ["args"] * 4
    + ["epoch", "slot_status", "failure_class", "backend_code"]
    + ["output_digest"] * 2
)
# Every field after the magic word and the timestamp (IO, not behaviour).
DIFF_FIELDS: tuple[str, ...] = RECORD_DTYPE.names[2:]


class RingRecorder:
    """Publishes into a ring of ``capacity`` slots held in ``xp`` arrays.

    Slot ``seq % capacity`` takes the ``seq``-th publish; the epoch is
    ``seq // capacity``, so it starts at 0 and goes up by one each time the
    ring wraps.  The slot table is a ``(capacity, 16)`` uint32 array laid out
    exactly like a VRRL0001 record, on the GPU when ``xp`` is CuPy.  Single
    publishes are staged in a small host buffer and copied to the table in
    batches; slots are drained to the host stream before the ring overwrites
    them, on ``drain()``, and whenever the stream is read.
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        xp: ModuleType | str | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        capacity = int(capacity)
        if not 0 < capacity <= MAX_RECORDS:
            raise CapacityError(
                f"ring {name!r} capacity must be between 1 and {MAX_RECORDS}",
                place=f"ring {name!r}",
                current=capacity,
                fix=f"pass a capacity from 1 to {MAX_RECORDS} where the test calls "
                f"replay.ring({name!r}, capacity)",
            )
        if sys.byteorder != "little":
            # The slot table is read as VRRL words in place; a big-endian host would swap them.
            raise RingLogError(
                "ring recording needs a little-endian host",
                place=f"ring {name!r}",
                fix="run tests that call replay.ring() on a little-endian machine",
            )
        self.name = name
        self._capacity = capacity
        # Publish counters: seq < _drained is in _host, seq < _flushed in the
        # table, the rest in _stage.  _seq - _drained never exceeds capacity.
        self._seq = 0
        self._flushed = 0
        self._drained = 0
        self.xp = backend.array_module(xp)
        self._clock = clock
        self._device = backend.is_device(self.xp)
        self._table = backend.zeros(self.xp, (capacity, RECORD_WORDS), np.uint32, HEADER_BYTES)
        self._table64 = self._table.view(self.xp.uint64)
        self._stage_rows = min(capacity, _STAGE_ROWS)
        self._stage = backend.host_empty(self.xp, (self._stage_rows, RECORD_WORDS), np.uint32)
        self._stage_bytes = memoryview(self._stage).cast("B")
        self._pack_row = RECORD_STRUCT.pack_into
        self._bounce = (
            backend.host_empty(self.xp, (min(capacity, _BOUNCE_ROWS), RECORD_WORDS), np.uint32)
            if self._device
            else None
        )
        self._host = backend.aligned_empty((0, RECORD_WORDS), np.uint32, HEADER_BYTES)

    # --- state ------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def published(self) -> int:
        """How many records have been published so far."""
        return self._seq

    @property
    def cursor(self) -> int:
        """The slot the next publish goes to."""
        return self._seq % self._capacity

    @property
    def epoch(self) -> int:
        """The epoch the next publish gets (how many times the ring has wrapped)."""
        return self._seq // self._capacity

    @property
    def slots(self) -> Any:
        """The slot table, ``(capacity, 16)`` uint32 in ``xp``, after staged publishes land."""
        self._flush()
        return self._table

    # --- publishing -------------------------------------------------------------------

    def publish(self, opcode: int, tenant: int = 0, args: Sequence[int] = ()) -> int:
        """Publish one slot and return its index."""
        seq = self._seq
        if seq >= MAX_RECORDS:
            raise self._stream_full(1)
        if seq - self._flushed == self._stage_rows or seq - self._drained == self._capacity:
            self._make_room()
        if len(args) != 4:
            args = _pad_args(args)
        a0, a1, a2, a3 = args
        cap = self._capacity
        slot = seq % cap
        ts = self._clock()
        try:
            # One C call packs the whole record into the preallocated staging row.
            self._pack_row(
                self._stage_bytes, (seq - self._flushed) * RECORD_BYTES,
                RECORD_MAGIC, ts, slot, tenant, opcode,
                a0, a1, a2, a3, (seq // cap) & _U32, 0, 0, 0, 0,
            )  # fmt: skip
        except (struct.error, TypeError) as exc:  # TypeError: an __index__ that raises
            self._check_clock(ts)
            given = (opcode, tenant, *args)
            plain = [_host_int(v) for v in given]  # CuPy 0-d arrays have no __index__
            if any(map(backend.is_device_array, given)) and not any(
                map(backend.is_device_array, plain)
            ):
                return self.publish(plain[0], plain[1], plain[2:])
            raise ValueError(
                f"ring {self.name!r}: opcode, tenant and args must be integers in 0..2**32-1 "
                f"(got opcode={opcode!r}, tenant={tenant!r}, args={tuple(args)!r})"
            ) from exc
        self._seq = seq + 1
        return slot

    def publish_many(self, opcodes: Any, tenants: Any = 0, args: Any = None) -> Any:
        """Publish ``len(opcodes)`` slots in order with a few array operations.

        ``opcodes`` is 1-D; ``tenants`` a scalar or 1-D of the same length;
        ``args`` None, a 2-D ``(n, k)`` array with k <= 4, or a 1-D ``(k,)``
        tuple shared by every record.  Arrays may be NumPy or on the ring's
        device.  Returns the slot indices as an int64 array of ``xp``.
        """
        xp = self.xp
        ops = _u32_column(xp, opcodes, "opcodes", self.name)
        n = int(ops.shape[0])
        if self._seq + n > MAX_RECORDS:
            raise self._stream_full(n)
        ten = _u32_column(xp, tenants, "tenants", self.name, n)
        arg64 = xp.ascontiguousarray(_u32_args(xp, args, n, self.name)).view(xp.uint64)
        self._flush()
        seq0 = self._seq
        ts = self._check_clock(self._clock())
        cap = self._capacity
        block = _HOST_BLOCK_ROWS if not self._device else cap
        done = 0
        while done < n:
            if self._seq - self._drained == cap:
                self.drain()
            seq = self._seq
            slot = seq % cap
            # A chunk never crosses the ring's end, so its epoch is one number.
            m = min(n - done, cap - slot, cap - (seq - self._drained))
            blocks = [(slot + off, done + off, min(block, m - off)) for off in range(0, m, block)]
            self._fill_blocks(blocks, ts, seq // cap, ops, ten, arg64)
            done += m
            self._seq = self._flushed = seq + m
        first = seq0 % cap
        if first + n <= cap:  # no wrap: skip a modulo over the whole batch
            return xp.arange(first, first + n, dtype=xp.int64)
        return xp.arange(seq0, seq0 + n, dtype=xp.int64) % cap

    def _check_clock(self, ts: Any) -> int:
        """``ts`` if it fits a VRRL timestamp (u64 ns since 1970), else ValueError."""
        if isinstance(ts, (int, np.integer)) and not isinstance(ts, bool) and 0 <= ts <= _U64:
            return int(ts)
        raise ValueError(
            f"ring {self.name!r}: the clock read {ts!r}, which is not a VRRL timestamp "
            "(an integer count of ns since 1970, 0..2**64-1); a time-travel library "
            "may have moved the clock before 1970: keep it at 1970 or later while "
            "the test publishes"
        )

    def _fill_blocks(
        self,
        blocks: list[tuple[int, int, int]],
        ts: int,
        epoch: int,
        ops: Any,
        ten: Any,
        arg64: Any,
    ) -> None:
        """Fill ``(first row, first input, rows)`` blocks; large host batches on several threads."""

        def fill_part(part: list[tuple[int, int, int]]) -> None:
            for first, lo, k in part:
                self._fill(
                    first,
                    ts,
                    epoch,
                    ops[lo : lo + k],
                    ten if ten.ndim == 0 else ten[lo : lo + k],
                    arg64 if arg64.ndim == 1 else arg64[lo : lo + k],
                )

        rows = sum(k for _, _, k in blocks)
        threads = 1 if self._device or rows < _PARALLEL_FILL_ROWS else _fill_threads()
        if threads == 1:
            fill_part(blocks)
            return
        # Contiguous shares, one per thread; this thread fills the first.  The
        # helpers live only for this call: a thread left running would make a
        # later os.fork() in the test warn (Python 3.12+) or deadlock.
        share = -(-len(blocks) // threads)
        parts = [blocks[i : i + share] for i in range(0, len(blocks), share)]
        errors: list[BaseException] = []

        def run(part: list[tuple[int, int, int]]) -> None:
            try:
                fill_part(part)
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        started: list[threading.Thread] = []
        try:
            for part in parts[1:]:
                helper = threading.Thread(target=run, args=(part,), name=_FILL_THREAD_NAME)
                try:
                    helper.start()
                except RuntimeError:  # no thread to be had: a process limit, shutdown
                    fill_part(part)
                else:
                    started.append(helper)
            fill_part(parts[0])
        finally:
            # Also on an error here: no helper may go on writing rows after we return.
            for helper in started:
                helper.join()
        if errors:
            raise errors[0]

    def _fill(self, first: int, ts: int, epoch: int, ops: Any, ten: Any, arg64: Any) -> None:
        """Write ``len(ops)`` records into table rows ``first...``, one column at a time.

        Aligned 8-byte word pairs of the record (magic with the timestamp's low
        word, the timestamp's high word with the slot, the args, the tail) go
        in as uint64 columns, so a record takes six strided writes, not sixteen.
        """
        xp = self.xp
        rows = len(ops)
        last = first + rows
        words, pairs = self._table[first:last], self._table64[first:last]
        # NumPy uint64 scalars: CuPy would read a Python int >= 2**63 as int64 and overflow.
        pairs[:, 0] = np.uint64(RECORD_MAGIC | (ts & _U32) << 32)
        if self._device or rows > len(_SLOT_HIGH):
            slot_high = xp.arange(rows, dtype=xp.uint64) << np.uint64(32)
        else:
            slot_high = _SLOT_HIGH[:rows]
        xp.add(slot_high, np.uint64(first << 32 | ts >> 32), out=pairs[:, 1])
        words[:, 4] = ten
        words[:, 5] = ops
        pairs[:, 3] = arg64[..., 0]
        pairs[:, 4] = arg64[..., 1]
        if epoch:
            pairs[:, 5] = epoch & _U32  # epoch; slot_status 0
            pairs[:, 6] = 0
            pairs[:, 7] = 0
        # else: in the first lap every row past the cursor still holds the
        # table's initial zeros, which already read as epoch 0 and no evidence.

    def complete(
        self,
        slot: int,
        status: int,
        output: Any = None,
        error: FailureEvidence | FailureClass | int | None = None,
        *,
        backend_code: int = 0,
    ) -> None:
        """Record how the latest publish into ``slot`` ended.

        ``status`` is the terminal slot status word.  ``error`` is a
        FailureEvidence (its class, backend code and digest are used; a
        ``status``, ``backend_code`` or ``output`` that contradicts it raises
        ValueError) or a FailureClass.  ``output`` (bytes or an array) sets the output digest,
        blake3 over its host bytes: a CuPy array is copied to the host for it.
        """
        seq = self._latest_seq(slot)
        slot = seq % self._capacity
        status, backend_code = _host_int(status), _host_int(backend_code)
        digest = 0
        fclass: int = FailureClass.NONE
        code = backend_code
        if isinstance(error, FailureEvidence):
            fclass, code, digest = error.failure_class, error.backend_code, error.output_digest
            self._agree("status", status, error.slot_status)
            if backend_code:
                self._agree("backend_code", backend_code, code)
        elif error is not None:
            fclass = FailureClass.decode(error)
        if output is not None:
            computed = backend.output_digest(output)
            if digest:
                self._agree("the digest of output", computed, digest)
            digest = computed
        try:
            words = np.array(
                [status, int(fclass), code, digest & _U32, digest >> 32], dtype=np.uint32
            )
        except (OverflowError, ValueError, TypeError) as exc:
            raise ValueError(
                f"ring {self.name!r}: status and backend_code must be integers in 0..2**32-1 "
                f"(got status={status!r}, backend_code={code!r})"
            ) from exc
        if seq >= self._flushed:
            self._stage[seq - self._flushed, 11:] = words
        elif seq >= self._drained:
            backend.copy_to_device(self._table[slot, 11:], words)
        else:
            self._host[seq, 11:] = words

    def _agree(self, what: str, given: Any, evidence: Any) -> None:
        """complete() arguments that the FailureEvidence also sets must not contradict it."""
        if given != evidence:
            raise ValueError(
                f"ring {self.name!r}: complete() got {what}={given!r} but the FailureEvidence "
                f"says {evidence!r}; pass one of them, or the same value in both"
            )

    def _stream_full(self, adding: int) -> CapacityError:
        return CapacityError(
            f"ring {self.name!r} would hold {self._seq + adding} records; a ring's stream "
            f"(every publish, kept for the diff and the .vrrl log) holds at most {MAX_RECORDS}",
            place=f"ring {self.name!r} publish #{self._seq + 1}",
            current=f"{self._seq} published, {adding} more asked",
            fix="publish fewer records per test, or spread them over several rings: "
            f"replay.ring({self.name!r} + '-1', capacity), ...",
        )

    def _latest_seq(self, slot: int) -> int:
        slot = int(slot)  # also a NumPy/CuPy scalar from publish_many's result
        cap = self._capacity
        if not 0 <= slot < min(cap, self._seq):
            raise ValueError(
                f"ring {self.name!r}: slot {slot} has not been published "
                f"(capacity {cap}, {self._seq} published)"
            )
        return slot + cap * ((self._seq - 1 - slot) // cap)

    # --- moving slots to the host -----------------------------------------------------

    def _make_room(self) -> None:
        self._flush()
        if self._seq - self._drained == self._capacity:
            self.drain()

    def _flush(self) -> None:
        """Copy staged single publishes into the slot table (at most two copies)."""
        count = self._seq - self._flushed
        if not count:
            return
        cap = self._capacity
        start = self._flushed % cap
        first = min(count, cap - start)
        backend.copy_to_device(self._table[start : start + first], self._stage[:first])
        if first < count:
            backend.copy_to_device(self._table[: count - first], self._stage[first:count])
        self._flushed = self._seq

    def drain(self) -> int:
        """Move every slot not yet on the host into the host stream; returns how many moved."""
        self._flush()
        count = self._flushed - self._drained
        if not count:
            return 0
        base = self._reserve_host(count)
        for lo, hi, dst in self._table_pieces(self._drained, self._flushed):
            backend.copy_to_host(
                self._host[base + dst : base + dst + hi - lo], self._table[lo:hi], self._bounce
            )
        self._drained = self._flushed
        return count

    def _table_pieces(self, first: int, stop: int) -> list[tuple[int, int, int]]:
        """Table row ranges holding seqs [first, stop), as (lo, hi, offset from first)."""
        cap = self._capacity
        count = stop - first
        start = first % cap
        head = min(count, cap - start)
        pieces = [(start, start + head, 0)]
        if head < count:
            pieces.append((0, count - head, head))
        return pieces

    def _reserve_host(self, extra: int) -> int:
        need = self._drained + extra
        if need > len(self._host):
            rows = max(need, 2 * len(self._host))
            grown = backend.aligned_empty((rows, RECORD_WORDS), np.uint32, HEADER_BYTES)
            grown[: self._drained] = self._host[: self._drained]
            self._host = grown
        return self._drained

    def _host_pieces(self) -> Iterator[np.ndarray]:
        """The whole stream as host ``(k, 16)`` word arrays, in order, copying as little as can be.

        Drained records come from the host stream; the rest are read in place
        from a host table, or streamed through the pinned bounce buffer from a
        device table (each piece is valid until the next one is produced).
        """
        self._flush()
        if self._drained:
            yield self._host[: self._drained]
        if self._flushed == self._drained:
            return
        for lo, hi, _ in self._table_pieces(self._drained, self._flushed):
            if self._bounce is None:
                yield self._table[lo:hi]
                continue
            step = len(self._bounce)
            for start in range(lo, hi, step):
                part = self._bounce[: min(step, hi - start)]
                backend.copy_to_host(part, self._table[start : start + len(part)])
                yield part

    # --- reading the stream -----------------------------------------------------------

    def stream(self) -> np.ndarray:
        """Every record published so far, in order, as a RECORD_DTYPE host array (a copy)."""
        if self._device:
            self.drain()
        words = np.empty((self._seq, RECORD_WORDS), dtype=np.uint32)
        at = 0
        for piece in self._host_pieces():
            words[at : at + len(piece)] = piece
            at += len(piece)
        return _as_records(words)

    def records(self, tenant: int | None = None) -> np.ndarray:
        """The stream, or only the records of ``tenant``; never another tenant's."""
        stream = self.stream()
        if tenant is None:
            return stream
        if isinstance(tenant, bool) or not isinstance(tenant, (int, np.integer)):
            raise TypeError(f"tenant must be an int, got {type(tenant).__name__}")
        return stream[stream["tenant_id"] == tenant]

    def write_log(self, path: str | os.PathLike[str], *, sync: bool = False) -> bool:
        """Write the stream as a VRRL0001 file; returns False when it was left untouched.

        An existing file that holds exactly the stream's records, equal in
        everything but timestamps, is kept as it is, so a re-record does not
        churn the file.
        """
        if os.path.exists(path):
            try:
                # Same slot count too: a log with spare empty slots (RingLog.open
                # with a larger capacity) reads as the same records but would not
                # match the cassette's record count.
                existing = read_records(path) if check_log(path) == max(self._seq, 1) else None
            except RingLogError:
                existing = None  # corrupt or foreign: overwrite it
            if existing is not None and streams_equal_ignoring_time(existing, self.stream()):
                return False
        pieces = (_as_records(p) for p in self._host_pieces())
        write_chunks(path, pieces, count=self._seq, sync=sync)
        return True

    def diff(self, recorded: np.ndarray, *, max_records: int = 20) -> Comparison:
        """Compare the current stream with ``recorded`` (see diff_streams)."""
        return diff_streams(recorded, self.stream(), self.name, max_records=max_records)

    def __len__(self) -> int:
        return self._seq

    def __repr__(self) -> str:
        return (
            f"RingRecorder({self.name!r}, capacity={self._capacity}, "
            f"xp={self.xp.__name__}, published={self._seq})"
        )


@functools.cache
def _fill_threads() -> int:
    """How many threads fill a large host batch: the CPUs this process may use, at most 4."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(_MAX_FILL_THREADS, cpus or 1))


# --- argument checks ------------------------------------------------------------------


def _host_int(value: Any) -> Any:
    """A CuPy 0-d array (say ``ops[i]``) as a Python int; anything else as it is.

    CuPy scalars define ``__int__`` but not ``__index__``, so struct and
    ``np.array`` refuse them where NumPy scalars pass.
    """
    if backend.is_device_array(value) and value.ndim == 0:
        return int(value)
    return value


def _pad_args(args: Sequence[int]) -> tuple[int, int, int, int]:
    values = tuple(args)
    if len(values) > 4:
        raise ValueError(f"a ring slot holds at most 4 args, got {len(values)}: {values!r}")
    return (*values, 0, 0, 0, 0)[:4]  # type: ignore[return-value]


def _checked_u32(xp: ModuleType, values: Any, what: str, ring: str) -> Any:
    array = xp.asarray(values)
    if array.dtype.kind not in "ui" and not (array.dtype.kind == "b"):
        raise TypeError(f"ring {ring!r}: {what} must be integers, got dtype {array.dtype}")
    if array.size and array.dtype != xp.uint32:
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > _U32:
            raise ValueError(f"ring {ring!r}: {what} must be in 0..2**32-1, got {lo}..{hi}")
    return array.astype(xp.uint32, copy=False)


def _u32_column(xp: ModuleType, values: Any, what: str, ring: str, n: int | None = None) -> Any:
    array = _checked_u32(xp, values, what, ring)
    if n is None:
        if array.ndim != 1:
            raise ValueError(f"ring {ring!r}: {what} must be 1-D, got shape {array.shape}")
    elif array.ndim != 0 and array.shape != (n,):
        raise ValueError(
            f"ring {ring!r}: {what} must be a scalar or shape ({n},), got {array.shape}"
        )
    return array


def _u32_args(xp: ModuleType, args: Any, n: int, ring: str) -> Any:
    if args is None:
        return xp.zeros(4, dtype=xp.uint32)
    array = _checked_u32(xp, args, "args", ring)
    if array.ndim not in (1, 2) or array.shape[-1] > 4 or (array.ndim == 2 and len(array) != n):
        raise ValueError(
            f"ring {ring!r}: args must be shape ({n}, k) or (k,) with k <= 4, got {array.shape}"
        )
    k = array.shape[-1]
    if k == 4:
        return array
    padded = xp.zeros((*array.shape[:-1], 4), dtype=xp.uint32)
    padded[..., :k] = array
    return padded


def _as_records(words: np.ndarray) -> np.ndarray:
    """Host ``(n, 16)`` uint32 words seen as ``n`` VRRL records (no copy)."""
    words = np.ascontiguousarray(words, dtype="<u4")
    return words.view(RECORD_DTYPE).reshape(len(words))


def _as_words(records: np.ndarray) -> np.ndarray:
    """VRRL records seen as ``(n, 16)`` uint32 words (no copy when already contiguous)."""
    if records.dtype == RECORD_DTYPE:
        # The magic word is not compared, so skip as_record_array's pass over it.
        records = np.ascontiguousarray(records).reshape(-1)
    else:
        records = as_record_array(records)
    return records.view("<u4").reshape(len(records), RECORD_WORDS)


# --- stream diff ----------------------------------------------------------------------


def _differing_rows(a: np.ndarray, b: np.ndarray, stop_at_first: bool = False) -> np.ndarray:
    """Indices of the rows of two ``(n, 16)`` word arrays that differ past the timestamp.

    Compared in cache-sized blocks, as slot_idx (word 3) plus the six aligned
    u64 pairs of words 4..15, which halves the element comparisons; a block
    that is equal costs two comparisons and produces nothing.
    """
    a64, b64 = a.view(np.uint64), b.view(np.uint64)
    found = []
    for lo in range(0, len(a), _DIFF_BLOCK_ROWS):
        hi = lo + _DIFF_BLOCK_ROWS
        pairs = a64[lo:hi, 2:] != b64[lo:hi, 2:]
        slots = a[lo:hi, 3] != b[lo:hi, 3]
        if pairs.any() or slots.any():
            found.append(np.flatnonzero(pairs.any(axis=1) | slots) + lo)
            if stop_at_first:
                break
    return np.concatenate(found) if found else np.empty(0, dtype=np.intp)


def streams_equal_ignoring_time(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two record streams match in every diffed field (timestamps ignored)."""
    if len(a) != len(b):
        return False
    return not _differing_rows(_as_words(a), _as_words(b), stop_at_first=True).size


def stream_digest(records: np.ndarray) -> str:
    """blake3 hex over every record's diffed fields, in order; timestamps do not count.

    Equal for two streams exactly when streams_equal_ignoring_time says so
    (up to blake3 collisions), so a cassette can hold it without churning.
    """
    words = np.ascontiguousarray(_as_words(records)[:, _DIFF_FIRST_WORD:])
    return backend.hex_digest(words)


def _field_value(record: np.void, field: str) -> Any:
    value = record[field]
    if field == "args":
        return [int(v) for v in value]
    if field == "failure_class":
        return FailureClass.decode(int(value)).name
    if field == "output_digest":
        return f"0x{int(value):016x}"
    return int(value)


def _record_summary(record: np.void) -> dict[str, Any]:
    return {field: _field_value(record, field) for field in DIFF_FIELDS}


def diff_streams(
    recorded: np.ndarray, current: np.ndarray, ring_name: str, *, max_records: int = 20
) -> Comparison:
    """Compare two VRRL record streams field by field, timestamps excluded.

    The comparison is over whole u32 word columns at once; only the first
    ``max_records`` differing records are turned into Python values for the
    payload.
    """
    rec_words, cur_words = _as_words(recorded), _as_words(current)
    n_rec, n_cur = len(rec_words), len(cur_words)
    common = min(n_rec, n_cur)
    differing = _differing_rows(rec_words[:common], cur_words[:common])
    extra = abs(n_rec - n_cur)
    if not differing.size and not extra:
        return Comparison.passed(ring=ring_name, records=n_rec)

    count = int(differing.size) + extra
    diffs = []
    for index in differing[:max_records].tolist():
        words = rec_words[index, _DIFF_FIRST_WORD:] != cur_words[index, _DIFF_FIRST_WORD:]
        fields = sorted(
            {_WORD_FIELD[_DIFF_FIRST_WORD + w] for w in np.flatnonzero(words).tolist()},
            key=DIFF_FIELDS.index,
        )
        diffs.append(
            {
                "index": index,
                "fields": fields,
                "recorded": _record_summary(recorded[index]),
                "current": _record_summary(current[index]),
            }
        )
    longer, side = (recorded, "recorded") if n_rec > n_cur else (current, "current")
    tail = [
        {"index": i, side: _record_summary(longer[i])}
        for i in range(common, min(common + max_records, len(longer)))
    ]

    details = [
        f"records: {n_rec} recorded, {n_cur} current; {count} differ (timestamps are not compared)"
    ]
    if diffs:
        first = diffs[0]
        field = first["fields"][0]
        index = first["index"]
        place = f"ring {ring_name!r} record {index} field {field}"
        rec_value, cur_value = first["recorded"][field], first["current"][field]
        summary = f"ring {ring_name!r}: record {index} differs in {', '.join(first['fields'])}"
        for item in diffs[1:6]:
            details.append(f"record {item['index']}: {', '.join(item['fields'])} differ")
        if extra:
            details.append(f"{extra} more record(s) only in the {side} stream from index {common}")
    else:
        place = f"ring {ring_name!r} record {common} (record count)"
        rec_value, cur_value = n_rec, n_cur
        summary = (
            f"ring {ring_name!r}: {n_rec} records recorded, {n_cur} now; the first {common} match"
        )
        if tail:
            details.append(f"first extra record ({side}): {tail[0][side]}")

    return Comparison(
        ok=False,
        kind="replay_ring_diff",
        summary=summary,
        place=place,
        recorded=rec_value,
        current=cur_value,
        details=tuple(details),
        payload={
            "ring": ring_name,
            "records": {"recorded": n_rec, "current": n_cur},
            "differing": count,
            "compared_fields": list(DIFF_FIELDS),
            "diffs": diffs,
            "extra": tail,
        },
    )
