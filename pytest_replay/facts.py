"""IO facts: keyed values recorded live and served back in order on replay."""

from __future__ import annotations

import contextvars
import datetime as _dt
import difflib
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from .blobs import BlobStore
from .canonical import NotCanonical, canonical_json, copy_json, digest, is_array
from .cassette import Block, gc_paused
from .errors import (
    BlobError,
    CassetteError,
    FactNotRecordable,
    FactPayloadDecodeFailed,
    FactPayloadGetFailed,
    FactPayloadInvalid,
    MissingFact,
    MissingFactKey,
    ReplayError,
    rerecord_fix,
    restore_fix,
)
from .modes import Mode

T = TypeVar("T")

HEX_INLINE_MAX = 64  # bytes up to this size stay readable in the YAML as hex
_json_loads = json.JSONDecoder().decode
_MISS: Any = object()
# Values handed out as they are; containers and arrays are copied first.
_IMMUTABLE = frozenset({int, float, str, bool, type(None), bytes})

# Which step (and attempt) a derived key belongs to; steps set it, facts read it.
current_scope: contextvars.ContextVar[tuple[str, int]] = contextvars.ContextVar(
    "pytest_replay_scope", default=("test", 0)
)


@contextmanager
def scope(state: str, attempt: int) -> Iterator[None]:
    """Derived fact keys made inside are ``...|state:<state>|attempt:<attempt>|...``."""
    token = current_scope.set((state, attempt))
    try:
        yield
    finally:
        current_scope.reset(token)


# The batch item a fact belongs to: (key prefix, order). step_batch items run
# concurrently; each item gets its own prefix, so its keys keep their own
# sequences whatever the thread schedule, and an order, so the file is written
# item by item and a re-record gives the same bytes.
Lane = tuple[str, tuple[int, ...]]
_lane: contextvars.ContextVar[Lane] = contextvars.ContextVar("pytest_replay_lane", default=("", ()))
_lane_get = _lane.get


@contextmanager
def lane(item: Lane) -> Iterator[None]:
    """Facts taken inside belong to one batch item (see FactLog.batch_lanes)."""
    token = _lane.set(item)
    try:
        yield
    finally:
        _lane.reset(token)


# Keys of the facts recorded inside a taken() block; a step stores them so a
# mocked replay, which does not run the step, can account for them (skip()).
_taken: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "pytest_replay_taken", default=None
)


@contextmanager
def taken() -> Iterator[list[str]]:
    """The keys of the facts recorded inside the block, in order (this context only)."""
    keys: list[str] = []
    token = _taken.set(keys)
    try:
        yield keys
    finally:
        _taken.reset(token)


# A stored payload: (kind, data) with kind json | hex | blob.
_Payload = tuple[str, str]


class PayloadTable:
    """Content-addressed payloads: ``<id> <kind> <data>`` lines in the cassette.

    The id is blake3 of the canonical bytes (canonical JSON text for values;
    bytes and arrays are prefixed so they can never share an id with JSON).
    Equal values share one payload however many facts point at them.
    """

    def __init__(self, blobs: BlobStore, threshold: int) -> None:
        self.blobs = blobs
        self.threshold = threshold
        self._raw: dict[str, _Payload] = {}
        self.cache: dict[str, Any] = {}  # payload id -> decoded value

    def __contains__(self, pid: str) -> bool:
        return pid in self._raw

    def ids(self) -> set[str]:
        return set(self._raw)

    def stored(self, pid: str) -> tuple[str, str] | None:
        """(kind, data) as the cassette line holds it: json text, hex, or a blob name."""
        return self._raw.get(pid)

    # -- recording
    def put(self, value: Any) -> str:
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            pid = digest(b"\x00bytes\x00" + data)
            if pid not in self._raw:
                if len(data) <= HEX_INLINE_MAX:
                    self._raw[pid] = ("hex", data.hex())
                else:
                    self._raw[pid] = ("blob", self.blobs.put(data, "bin"))
            return pid
        if is_array(value):
            data = _npy_bytes(value)
            pid = digest(b"\x00npy\x00" + data)
            if pid not in self._raw:
                self._raw[pid] = ("blob", self.blobs.put(data, "npy"))
            return pid
        text = canonical_json(value)  # raises NotCanonical
        pid = digest(text)
        if pid not in self._raw:
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
            if size > self.threshold:
                self._raw[pid] = ("blob", self.blobs.put(text.encode("utf-8"), "json"))
            else:
                self._raw[pid] = ("json", text)
        return pid

    # -- replaying
    def value(self, pid: str) -> Any:
        try:
            value = self.cache[pid]
        except KeyError:
            value = self.cache[pid] = self._decode(pid)
        if isinstance(value, (dict, list)):
            return copy_json(value)
        if is_array(value):
            return value.copy()
        return value

    def _decode(self, pid: str) -> Any:
        raw = self._raw.get(pid)
        if raw is None:
            raise FactPayloadGetFailed(
                "failed to read fact payload: the cassette names a payload it does not hold",
                place=f"payload {pid}",
                fix="the cassette was edited by hand or merged badly; re-record: "
                "pytest --replay=record {test}",
            )
        try:
            if raw[0] == "json":
                return _json_loads(raw[1])
            if raw[0] == "hex":
                return bytes.fromhex(raw[1])
            data = self.blobs.get(raw[1])
            ext = raw[1].rsplit(".", 1)[-1]
            if ext == "json":
                return _json_loads(data.decode("utf-8"))
            if ext == "npy":
                return _npy_load(data)
            return data
        except BlobError:
            raise
        except (ValueError, UnicodeDecodeError) as exc:
            raise FactPayloadDecodeFailed(
                f"failed to decode fact payload: {exc}",
                place=f"payload {pid} ({raw[0]} {raw[1][:40]})",
                fix="the cassette was edited by hand or corrupted; re-record: "
                "pytest --replay=record {test}",
            ) from None

    # -- YAML
    def to_yaml(self, used: set[str]) -> Block | None:
        raw = self._raw
        lines = [f"{pid} {raw[pid][0]} {raw[pid][1]}\n" for pid in sorted(used)]
        return Block("".join(lines)) if lines else None

    def load_yaml(self, text: Any, shown: str, *, decode: bool = True) -> None:
        """Parse ``<id> <kind> <data>`` lines, decoding every value up front.

        Written for 100k-line blocks: C-level splits and one JSON parse for
        all inline values; a line-by-line check runs only to name a bad line.
        ``decode=False`` only parses the lines (tools that must not read
        blobs, such as ``pytest-replay textconv``, use ``stored``).
        """
        if text is None:
            return
        lines = _block(text, "payloads", shown)
        if not lines:
            return
        try:
            ids, kinds, datas = zip(*[line.split(" ", 2) for line in lines], strict=True)
        except ValueError:  # a line with fewer than three fields
            ids = kinds = datas = ()
        if not ids or not _valid_ids(ids) or not set(kinds) <= _KINDS:
            _bad_line(lines, _PAYLOAD_LINE, "payloads", "'<64 hex id> json|hex|blob <data>'", shown)
        self._raw.update(zip(ids, zip(kinds, datas, strict=True), strict=True))
        if not decode:
            return
        if "json" in kinds:
            everything_json = len(set(kinds)) == 1
            json_ids = (
                ids
                if everything_json
                else [i for i, k in zip(ids, kinds, strict=True) if k == "json"]
            )
            texts = (
                datas
                if everything_json
                else [d for d, k in zip(datas, kinds, strict=True) if k == "json"]
            )
            values = _json_array(texts)
            if values is not None:
                self.cache.update(zip(json_ids, values, strict=True))
        # Anything else (hex, blobs, or a bad JSON line) one by one; blobs are
        # verified here, so a tampered one fails before the test runs.
        if len(self.cache) < len(self._raw):
            for pid in ids:
                if pid not in self.cache:
                    self.cache[pid] = self._decode(pid)


_KINDS = frozenset({"json", "hex", "blob"})


def _block(text: Any, section: str, shown: str) -> list[str]:
    if not isinstance(text, str):
        raise CassetteError(
            f"section {section!r} must be a text block",
            cassette=shown,
            fix=restore_fix(),
        )
    # Only "\n" ends a record: splitlines() would also split at U+2028,
    # U+2029 and U+0085, which JSON text may hold unescaped.
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def _valid_ids(ids: Sequence[str]) -> bool:
    """Every id is 64 hex digits (one fromhex call checks them all)."""
    if not set(map(len, ids)) <= {64}:
        return False
    try:
        bytes.fromhex("".join(ids))
    except ValueError:
        return False
    return True


def _json_array(texts: Sequence[str]) -> list[Any] | None:
    """Decode many JSON texts with one C-level parse; None if any is bad."""
    try:
        values = _json_loads("[" + ",".join(texts) + "]")
    except ValueError:
        return None
    return values if len(values) == len(texts) else None


def _npy_bytes(array: Any) -> bytes:
    import numpy as np

    host = array.get() if hasattr(array, "__cuda_array_interface__") else np.asarray(array)
    if host.dtype.hasobject:
        raise NotCanonical("arrays of Python objects cannot be stored")
    if not host.flags.c_contiguous:
        host = host.copy(order="C")  # equal values, one payload id, whatever the layout
    buf = io.BytesIO()
    np.save(buf, host, allow_pickle=False)
    return buf.getvalue()


def _npy_load(data: bytes) -> Any:
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


_FACT_LINE = re.compile(r'"((?:[^"\\]|\\.)*)" ([0-9a-fA-F]{64})')
_PAYLOAD_LINE = re.compile(r"([0-9a-fA-F]{64}) (json|hex|blob) (.*)")


def _bad_line(
    lines: list[str], pattern: re.Pattern[str], section: str, shape: str, shown: str
) -> None:
    for lineno, line in enumerate(lines, 1):
        if not pattern.fullmatch(line) or (
            section == "facts" and _json_array([line.rpartition(" ")[0]]) is None
        ):
            raise CassetteError(
                f"{section} line is not {shape}",
                cassette=shown,
                place=f"{section} line {lineno}: {line[:80]!r}",
                fix=restore_fix(),
            )
    raise CassetteError(f"section {section!r} is malformed", cassette=shown)


def parse_index(text: Any, shown: str) -> list[tuple[str, str]]:
    """The ``facts:`` block as (key, payload id) pairs in call order."""
    return _parse_index(text, shown)


def _parse_index(text: Any, shown: str) -> list[tuple[str, str]]:
    """``"<json key>" <payload id>`` lines, parsed with C-level splits and one JSON parse."""
    if text is None:
        return []
    lines = _block(text, "facts", shown)
    if not lines:
        return []
    key_texts, _, ids = zip(*[line.rpartition(" ") for line in lines], strict=True)
    keys = _json_array(key_texts)
    if keys is None or not _valid_ids(ids) or not all(type(k) is str for k in keys):
        _bad_line(lines, _FACT_LINE, "facts", "'\"<key>\" <64 hex payload id>'", shown)
    return list(zip(keys, ids, strict=True))  # type: ignore[arg-type]


def _key_line(key: str, pid: str) -> str:
    return f"{json.dumps(key, ensure_ascii=False)} {pid}\n"


class FactLog:
    """The facts of one test: what the cassette holds and what this run did."""

    def __init__(
        self,
        *,
        mode: Mode,
        blobs: BlobStore,
        threshold: int,
        retryable: bool,
        recorded: Any = None,
        on_error: Callable[[ReplayError], ReplayError] | None = None,
        shown: str = "",
    ) -> None:
        self.mode = mode
        self.retryable = retryable
        self.payloads = PayloadTable(blobs, threshold)
        self._on_error = on_error or (lambda e: e)
        self._lock = threading.Lock()
        self._order: list[tuple[str, str]] = []  # recorded facts, file order
        self._index: dict[str, list[str]] = {}  # key -> payload ids, k-th call gets k-th
        # Replay hands out ids through list iterators: next() is atomic under the
        # GIL, so concurrent callers never get the same value and need no lock.
        self._iters: dict[str, Iterator[str]] = {}
        self._derived: dict[str, int] = {}
        self._new: list[tuple[str, str]] = []  # recorded or appended by this run
        self._new_lanes: dict[int, tuple[int, ...]] = {}  # index in _new -> batch order
        self._batches: dict[str, int] = {}  # lane prefix -> batches opened in it
        self._laned = False  # a batch opened lanes: replayed keys may need a prefix
        self._values: dict[str, str] = {}  # record_value key -> payload id, this run
        if recorded is not None:
            with gc_paused():
                self._load(recorded, shown)
        self._live = mode.live_io
        self._keeps = mode.records
        self._verify = mode is Mode.VERIFY
        self._cache = self.payloads.cache
        # Bind the mode's implementation once: the replay hot path has no mode test.
        if self._verify:
            self.fact = self._fact_verify  # type: ignore[method-assign]
        else:
            self.fact = self._fact_live if self._live else self._fact_replay  # type: ignore[method-assign]

    def _load(self, recorded: Any, shown: str) -> None:
        """Build the fact index and payload table from a parsed cassette."""
        self.payloads.load_yaml(recorded.get("payloads"), shown)
        self._order = _parse_index(recorded.get("facts"), shown)
        index = self._index
        for key, pid in self._order:
            ids = index.get(key)
            if ids is None:
                index[key] = [pid]
            else:
                ids.append(pid)
        missing = {pid for _, pid in self._order} - self.payloads.ids()
        if missing:
            key = next(k for k, p in self._order if p in missing)
            raise CassetteError(
                "a fact points at a payload the cassette does not hold",
                cassette=shown,
                place=f"fact {key!r} -> {sorted(missing)[0]}",
                fix=restore_fix(),
            )
        self._iters = {key: iter(ids) for key, ids in index.items()}

    # -- public API (the replay fixture hands these out directly) ------------------

    def fact(self, key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Live on record, from the cassette on replay; the k-th call gets the k-th value."""
        raise NotImplementedError  # replaced per instance in __init__

    def _fact_replay(self, key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        __tracebackhide__ = True
        if self._laned and type(key) is str:  # only once a batch has opened lanes
            key = _lane_get()[0] + key
        it = self._iters.get(key) if type(key) is str else None
        pid = next(it, None) if it is not None else None
        if pid is None:
            return self._missing(key, fn, args, kwargs)  # type: ignore[no-any-return]
        value = self._cache.get(pid, _MISS)
        if type(value) in _IMMUTABLE:
            return value  # type: ignore[no-any-return]
        return self.payloads.value(pid)  # type: ignore[no-any-return]  # decodes or copies

    def _fact_live(self, key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        __tracebackhide__ = True
        if type(key) is not str or not key:
            self._raise_missing_key(key)
        key = self._laned_key(key)
        value = fn(*args, **kwargs)
        if self._keeps:
            self._keep(key, value)
        return value

    def _fact_verify(self, key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Verify: the key must be in the recording as replay would need it; the value is live.

        Values are not compared (the world's clock and randomness differ run to
        run): what a test does with them is checked through its outputs.
        """
        __tracebackhide__ = True
        if type(key) is str:
            key = self._laned_key(key)
        it = self._iters.get(key) if type(key) is str else None
        if it is None or next(it, None) is None:
            if type(key) is not str or not key:
                self._raise_missing_key(key)
            raise self._error(self._missing_error(key, self._used(key)))
        return fn(*args, **kwargs)

    async def afact(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fact`` for a coroutine function: awaited only when it runs live."""
        __tracebackhide__ = True
        if type(key) is not str or not key:
            self._raise_missing_key(key)

        async def call() -> Any:
            return await fn(*args, **kwargs)

        fetch_live = self._live or (
            not self._has_next(self._laned_key(key)) and self.retryable and self.mode is Mode.REPLAY
        )
        if fetch_live:
            value = await call()
            return self.fact(key, lambda: value)
        return self.fact(key, _unreachable)  # served, or missing_fact without a live call

    def record_value(self, key: str, value: Any) -> str:
        """Store ``value`` under ``key`` once and return its payload id (idempotent)."""
        __tracebackhide__ = True
        if type(key) is not str or not key:
            self._raise_missing_key(key)
        key = self._laned_key(key)
        if self._verify:
            return self._record_value_verify(key, value)
        with self._lock:
            if not self._live and self._index.get(key):
                it = self._iters[key]
                if self._used(key) == 0:
                    next(it, None)
                return self._index[key][0]
            if key in self._values:
                return self._values[key]
        if not self._live and not (self.retryable and self.mode is Mode.REPLAY):
            raise self._error(self._missing_error(key, 0))
        pid = self._encode(key, value)
        with self._lock:
            if key in self._values:  # another thread stored it first
                return self._values[key]
            self._values[key] = pid
            if self._keeps or not self._live:
                self._append_new(key, pid)
                _note_taken(key)
            if not self._live:
                self._index[key] = [pid]
                self._iters[key] = iter(())
        return pid

    def _record_value_verify(self, key: str, value: Any) -> str:
        __tracebackhide__ = True
        with self._lock:
            if key in self._values:
                return self._values[key]
            if not self._index.get(key):
                raise self._error(self._missing_error(key, 0))
            if self._used(key) == 0:
                next(self._iters[key], None)
        pid = self._encode(key, value)  # staged only: verify never flushes blobs
        with self._lock:
            return self._values.setdefault(key, pid)

    def now_millis(self) -> int:
        __tracebackhide__ = True
        key = self.derived_key("now_millis")
        value = self.fact(key, _now_millis)
        if type(value) is not int or value < 0:
            raise self._error(self._invalid(key, "was not a non-negative integer", value))
        return value

    def now(self) -> _dt.datetime:
        __tracebackhide__ = True
        key = self.derived_key("now")
        text = self.fact(key, lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())
        try:
            return _dt.datetime.fromisoformat(text)
        except (TypeError, ValueError):
            raise self._error(self._invalid(key, "was not an ISO 8601 datetime", text)) from None

    def random_bytes(self, n: int) -> bytes:
        __tracebackhide__ = True
        key = self.derived_key("random_bytes")
        value = self.fact(key, os.urandom, n)
        if not isinstance(value, bytes) or len(value) != n:
            raise self._error(
                self._invalid(
                    key,
                    "had unexpected length",
                    f"{len(value)} bytes" if isinstance(value, bytes) else value,
                    current=f"{n} bytes requested",
                )
            )
        return value

    def uuid4(self) -> uuid.UUID:
        __tracebackhide__ = True
        key = self.derived_key("uuid4")
        text = self.fact(key, lambda: str(uuid.uuid4()))
        try:
            return uuid.UUID(text)
        except (TypeError, ValueError, AttributeError):
            raise self._error(self._invalid(key, "was not a UUID", text)) from None

    def derived_key(self, kind: str) -> str:
        """``{kind}|state:{step or 'test'}|attempt:{n}|ord:{k}``, k counted per prefix."""
        state, attempt = current_scope.get()
        prefix = f"{kind}|state:{state}|attempt:{attempt}"
        with self._lock:
            k = self._derived.get(prefix, 0)
            self._derived[prefix] = k + 1
        return f"{prefix}|ord:{k}"

    # -- results ---------------------------------------------------------------------

    @property
    def recorded_count(self) -> int:
        return len(self._order)

    @property
    def new_count(self) -> int:
        return len(self._new)

    def recorded_facts(self) -> list[tuple[str, str]]:
        """(key, payload id) as the cassette holds them, in call order."""
        return list(self._order)

    def payload_ids(self) -> set[str]:
        """Every payload the recorded facts point at."""
        return {pid for _, pid in self._order}

    def unused_facts(self) -> list[tuple[str, int]]:
        """Recorded facts this run never asked for, as (key, ordinal)."""
        out = []
        for key, pids in self._index.items():
            out.extend((key, k) for k in range(self._used(key), len(pids)))
        return out

    @property
    def served(self) -> int:
        """Recorded facts handed out so far."""
        return sum(self._used(key) for key in self._index)

    def unused(self) -> list[str]:
        return [f"fact {key!r}#{k}" for key, k in self.unused_facts()]

    def skip(self, key: str, count: int = 1) -> int:
        """Mark the next ``count`` recorded values of ``key`` used without serving them.

        A step replayed ``mocked`` does not run: the facts it took when it was
        recorded are accounted for by the step instead of reported unused.
        Returns how many were skipped.
        """
        it = self._iters.get(key)
        skipped = 0
        while it is not None and skipped < count and next(it, None) is not None:
            skipped += 1
        return skipped

    def finish(self) -> None:
        """Facts have nothing to check after the test body."""

    def save_files(self) -> None:
        """Everything this kind saves is in the cassette or the blob store."""

    def to_yaml(self) -> dict[str, Any]:
        """The ``facts``/``payloads`` sections to save (new recording, or old + appended)."""
        new = self._file_order()
        pairs = new if self._keeps else self._order + new
        if not pairs:
            return {}
        return {
            "facts": Block("".join(_key_line(k, p) for k, p in pairs)),
            "payloads": self.payloads.to_yaml({p for _, p in pairs}),
        }

    def batch_lanes(self, item_keys: Sequence[str]) -> list[Lane]:
        """One lane per item of a batch opened now, keyed by the items' step keys."""
        prefix, order = _lane_get()
        self._laned = True
        with self._lock:
            batch = self._batches.get(prefix, 0)
            self._batches[prefix] = batch + 1
        return [(f"{prefix}{key}/", (*order, batch, i)) for i, key in enumerate(item_keys)]

    # -- internals -------------------------------------------------------------------

    def _laned_key(self, key: str) -> str:
        """``key`` as stored: prefixed by the batch item's lane, once batches opened lanes."""
        return _lane_get()[0] + key if self._laned else key

    def _append_new(self, key: str, pid: str) -> None:
        """Under self._lock: a fact this run recorded, with its batch order if any."""
        order = _lane_get()[1]
        if order:
            self._new_lanes[len(self._new)] = order
        self._new.append((key, pid))

    def _file_order(self) -> list[tuple[str, str]]:
        """New facts in call order, each batch's facts together, item by item.

        A batch's facts go where its first fact arrived; inside, by item order,
        then call order within the item, so thread scheduling never shows.
        """
        if not self._new_lanes:
            return self._new
        out: list[Any] = []
        batches: dict[int, list[tuple[tuple[int, ...], int, tuple[str, str]]]] = {}
        for i, pair in enumerate(self._new):
            order = self._new_lanes.get(i)
            if order is None:
                out.append(pair)
                continue
            group = batches.get(order[0])
            if group is None:
                group = batches[order[0]] = []
                out.append(group)
            group.append((order[1:], i, pair))
        flat: list[tuple[str, str]] = []
        for entry in out:
            if isinstance(entry, list):
                flat.extend(pair for _, _, pair in sorted(entry, key=lambda e: (e[0], e[1])))
            else:
                flat.append(entry)
        return flat

    def _used(self, key: str) -> int:
        ids = self._index.get(key, ())
        it = self._iters.get(key)
        return len(ids) - (it.__length_hint__() if it is not None else 0)  # type: ignore[attr-defined]

    def _has_next(self, key: str) -> bool:
        it = self._iters.get(key)
        return it is not None and it.__length_hint__() > 0  # type: ignore[attr-defined]

    def _encode(self, key: str, value: Any) -> str:
        __tracebackhide__ = True
        try:
            return self.payloads.put(value)
        except NotCanonical as exc:
            raise self._error(
                FactNotRecordable(
                    f"the value of fact {key!r} cannot be stored: {exc}",
                    place=f"key {key!r}",
                    current=f"{type(value).__name__}: {value!r}"[:200],
                    fix="return JSON-able data (dict with str keys, list, str, number, bool, "
                    "None), bytes or a NumPy array from the fact function",
                )
            ) from None

    def _keep(self, key: str, value: Any) -> None:
        __tracebackhide__ = True
        pid = self._encode(key, value)
        with self._lock:
            self._append_new(key, pid)
        _note_taken(key)

    def _missing(self, key: Any, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        __tracebackhide__ = True
        if type(key) is not str or not key:
            self._raise_missing_key(key)
        if self.retryable and self.mode is Mode.REPLAY:
            # The seed's retryable missing fact: fetch live once and append.
            value = fn(*args, **kwargs)
            pid = self._encode(key, value)
            with self._lock:
                self._append_new(key, pid)
                self._index.setdefault(key, []).append(pid)
                self._iters[key] = iter(())  # exhausted: the next call is fetched too
            return value
        raise self._error(self._missing_error(key, self._used(key)))

    def _missing_error(self, key: str, k: int) -> MissingFact:
        recorded = self._index.get(key, [])
        nearest = difflib.get_close_matches(key, list(self._index), n=3, cutoff=0.5)
        details = [f"nearest recorded keys: {', '.join(map(repr, nearest)) or '(none)'}"]
        if self.mode is Mode.STRICT:
            fix = rerecord_fix() + "  (strict never fetches live)"
        elif self.mode is Mode.VERIFY:
            fix = rerecord_fix() + "  (the recording lacks a call the test makes now)"
        else:
            fix = rerecord_fix(
                "  (or set replay_missing_fact_retryable = true to fetch missing facts live)"
            )
        return MissingFact(
            "missing recorded fact",
            place=f"key {key!r} ordinal {k}",
            recorded=f"{len(recorded)} value(s) for this key",
            current=f"call #{k + 1} of this key",
            details=details,
            fix=fix,
            retryable=self.retryable,
        )

    def _invalid(self, key: str, what: str, value: Any, current: Any = None) -> FactPayloadInvalid:
        return FactPayloadInvalid(
            f"recorded fact payload {what}",
            place=f"key {key!r}",
            recorded=value,
            current=current if current is not None else "a valid value",
            fix=rerecord_fix(),
        )

    def _raise_missing_key(self, key: Any) -> None:
        __tracebackhide__ = True
        where = "replay" if not self._live else self.mode.value
        raise self._error(
            MissingFactKey(
                f"missing fact key for deterministic IO in {where} mode",
                current=repr(key),
                fix="pass a non-empty str key: replay.fact('quote', fetch, ...)",
            )
        )

    def _error(self, err: ReplayError) -> ReplayError:
        return self._on_error(err)


def _note_taken(key: str) -> None:
    keys = _taken.get()
    if keys is not None:
        keys.append(key)


def _now_millis() -> int:
    return time.time_ns() // 1_000_000


def _unreachable() -> Any:  # pragma: no cover - replay serves the value instead
    raise AssertionError("a recorded fact was about to be fetched live")
