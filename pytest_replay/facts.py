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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from .blobs import BlobStore
from .canonical import NotCanonical, canonical_json, digest
from .cassette import Block
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
)
from .modes import Mode

T = TypeVar("T")

HEX_INLINE_MAX = 64  # bytes up to this size stay readable in the YAML as hex
_PID = re.compile(r"[0-9a-f]{64}")
_json_loads = json.JSONDecoder().decode

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


def _copy_json(value: Any) -> Any:
    # Replayed containers are handed out fresh, so a test that mutates one
    # cannot change what a later call (or a shared payload) returns.
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


@dataclass(frozen=True)
class _Payload:
    kind: str  # json | hex | blob
    text: str


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
        self._values: dict[str, Any] = {}

    def __contains__(self, pid: str) -> bool:
        return pid in self._raw

    # -- recording
    def put(self, value: Any) -> str:
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            pid = digest(b"\x00bytes\x00" + data)
            if pid not in self._raw:
                if len(data) <= HEX_INLINE_MAX:
                    self._raw[pid] = _Payload("hex", data.hex())
                else:
                    self._raw[pid] = _Payload("blob", self.blobs.put(data, "bin"))
            return pid
        if _is_array(value):
            data = _npy_bytes(value)
            pid = digest(b"\x00npy\x00" + data)
            if pid not in self._raw:
                self._raw[pid] = _Payload("blob", self.blobs.put(data, "npy"))
            return pid
        text = canonical_json(value)  # raises NotCanonical
        pid = digest(text)
        if pid not in self._raw:
            if len(text) > self.threshold:
                self._raw[pid] = _Payload("blob", self.blobs.put(text.encode("utf-8"), "json"))
            else:
                self._raw[pid] = _Payload("json", text)
        return pid

    # -- replaying
    def value(self, pid: str) -> Any:
        try:
            value = self._values[pid]
        except KeyError:
            value = self._values[pid] = self._decode(pid)
        if isinstance(value, (dict, list)):
            return _copy_json(value)
        if _is_array(value):
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
            if raw.kind == "json":
                return _json_loads(raw.text)
            if raw.kind == "hex":
                return bytes.fromhex(raw.text)
            data = self.blobs.get(raw.text)
            ext = raw.text.rsplit(".", 1)[-1]
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
                place=f"payload {pid} ({raw.kind} {raw.text[:40]})",
                fix="the cassette was edited by hand or corrupted; re-record: "
                "pytest --replay=record {test}",
            ) from None

    # -- YAML
    def to_yaml(self, used: set[str]) -> Block | None:
        lines = [f"{pid} {self._raw[pid].kind} {self._raw[pid].text}\n" for pid in sorted(used)]
        return Block("".join(lines)) if lines else None

    def load_yaml(self, text: Any, shown: str) -> None:
        if text is None:
            return
        if not isinstance(text, str):
            raise CassetteError("section 'payloads' must be a text block", cassette=shown)
        for lineno, line in enumerate(text.splitlines(), 1):
            parts = line.split(" ", 2)
            if (
                len(parts) != 3
                or not _PID.fullmatch(parts[0])
                or parts[1]
                not in (
                    "json",
                    "hex",
                    "blob",
                )
            ):
                raise CassetteError(
                    "payload line is not '<64 hex id> json|hex|blob <data>'",
                    cassette=shown,
                    place=f"payloads line {lineno}: {line[:80]!r}",
                    fix="restore the cassette from version control, or re-record: "
                    "pytest --replay=record {test}",
                )
            self._raw[parts[0]] = _Payload(parts[1], parts[2])
            if parts[1] == "blob":
                # Verify on load: a tampered blob fails before the test runs.
                self._values[parts[0]] = self._decode(parts[0])


def _is_array(value: Any) -> bool:
    return hasattr(value, "__array_interface__") or hasattr(value, "__cuda_array_interface__")


def _npy_bytes(array: Any) -> bytes:
    import numpy as np

    host = array.get() if hasattr(array, "__cuda_array_interface__") else np.asarray(array)
    if host.dtype.hasobject:
        raise NotCanonical("arrays of Python objects cannot be stored")
    buf = io.BytesIO()
    np.save(buf, host, allow_pickle=False)
    return buf.getvalue()


def _npy_load(data: bytes) -> Any:
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


def _parse_index(text: Any, shown: str) -> list[tuple[str, str]]:
    if text is None:
        return []
    if not isinstance(text, str):
        raise CassetteError("section 'facts' must be a text block", cassette=shown)
    pairs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        key_text, _, pid = line.rpartition(" ")
        try:
            key = key_text[1:-1] if "\\" not in key_text else _json_loads(key_text)
            ok = key_text[:1] == '"' and key_text[-1:] == '"' and isinstance(key, str)
        except ValueError:
            ok = False
        if not ok or not _PID.fullmatch(pid):
            raise CassetteError(
                "fact line is not '\"<key>\" <64 hex payload id>'",
                cassette=shown,
                place=f"facts line {lineno}: {line[:80]!r}",
                fix="restore the cassette from version control, or re-record: "
                "pytest --replay=record {test}",
            )
        pairs.append((key, pid))
    return pairs


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
        self._index: dict[str, list[str]] = {}
        self._cursor: dict[str, int] = {}
        self._derived: dict[str, int] = {}
        self._new: list[tuple[str, str]] = []  # recorded or appended by this run
        self._values: dict[str, str] = {}  # record_value key -> payload id, this run
        self.served = 0
        if recorded is not None:
            self.payloads.load_yaml(recorded.get("payloads"), shown)
            self._order = _parse_index(recorded.get("facts"), shown)
            for key, pid in self._order:
                if pid not in self.payloads:
                    raise CassetteError(
                        "a fact points at a payload the cassette does not hold",
                        cassette=shown,
                        place=f"fact {key!r} -> {pid}",
                        fix="restore the cassette from version control, or re-record: "
                        "pytest --replay=record {test}",
                    )
                self._index.setdefault(key, []).append(pid)
        self._live = mode.live_io
        self._keeps = mode.records

    # -- public API (the replay fixture hands these out directly) ------------------

    def fact(self, key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Live on record, from the cassette on replay; the k-th call gets the k-th value."""
        __tracebackhide__ = True
        if type(key) is not str or not key:
            self._raise_missing_key(key)
        if not self._live:
            with self._lock:
                k = self._cursor.get(key, 0)
                recorded = self._index.get(key)
                if recorded is not None and k < len(recorded):
                    self._cursor[key] = k + 1
                    self.served += 1
                    pid = recorded[k]
                else:
                    pid = None
            if pid is not None:
                return self.payloads.value(pid)  # type: ignore[no-any-return]
            return self._missing(key, k, fn, args, kwargs)  # type: ignore[no-any-return]
        value = fn(*args, **kwargs)
        if self._keeps:
            self._keep(key, value)
        return value

    async def afact(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fact`` for a coroutine function: awaited only when it runs live."""
        __tracebackhide__ = True

        async def call() -> Any:
            return await fn(*args, **kwargs)

        if self._live or not self._has_next(key):
            value = await call()
            return self.fact(key, lambda: value)
        return self.fact(key, _unreachable)

    def record_value(self, key: str, value: Any) -> str:
        """Store ``value`` under ``key`` once and return its payload id (idempotent)."""
        __tracebackhide__ = True
        if type(key) is not str or not key:
            self._raise_missing_key(key)
        with self._lock:
            if not self._live and self._index.get(key):
                self._cursor[key] = max(self._cursor.get(key, 0), 1)
                self.served += 1
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
                self._new.append((key, pid))
            if not self._live:
                self._index[key] = [pid]
                self._cursor[key] = 1
        return pid

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
            used = self._cursor.get(key, 0)
            out.extend((key, k) for k in range(used, len(pids)))
        return out

    def unused(self) -> list[str]:
        return [f"fact {key!r}#{k}" for key, k in self.unused_facts()]

    def finish(self) -> None:
        """Facts have nothing to check after the test body."""

    def to_yaml(self) -> dict[str, Any]:
        """The ``facts``/``payloads`` sections to save (new recording, or old + appended)."""
        pairs = self._new if self._keeps else self._order + self._new
        if not pairs:
            return {}
        return {
            "facts": Block("".join(_key_line(k, p) for k, p in pairs)),
            "payloads": self.payloads.to_yaml({p for _, p in pairs}),
        }

    # -- internals -------------------------------------------------------------------

    def _has_next(self, key: str) -> bool:
        recorded = self._index.get(key)
        return recorded is not None and self._cursor.get(key, 0) < len(recorded)

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
            self._new.append((key, pid))

    def _missing(self, key: str, k: int, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        __tracebackhide__ = True
        if self.retryable and self.mode is Mode.REPLAY:
            # The seed's retryable missing fact: fetch live once and append.
            value = fn(*args, **kwargs)
            pid = self._encode(key, value)
            with self._lock:
                self._new.append((key, pid))
                self._index.setdefault(key, []).append(pid)
                self._cursor[key] = self._cursor.get(key, 0) + 1
            return value
        raise self._error(self._missing_error(key, k))

    def _missing_error(self, key: str, k: int) -> MissingFact:
        recorded = self._index.get(key, [])
        nearest = difflib.get_close_matches(key, list(self._index), n=3, cutoff=0.5)
        details = [f"nearest recorded keys: {', '.join(map(repr, nearest)) or '(none)'}"]
        if self.mode is Mode.STRICT:
            fix = rerecord_fix() + "  (strict never fetches live)"
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
                current=key,
                fix="pass a non-empty str key: replay.fact('quote', fetch, ...)",
            )
        )

    def _error(self, err: ReplayError) -> ReplayError:
        return self._on_error(err)


def _now_millis() -> int:
    return time.time_ns() // 1_000_000


def _unreachable() -> Any:  # pragma: no cover - replay serves the value instead
    raise AssertionError("a recorded fact was about to be fetched live")
