"""Tool effects: side effects recorded with digests and redaction, idempotency, the resume plan."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import copy
import inspect
import itertools
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .blobs import BlobStore
from .canonical import (
    NotCanonical,
    canonical_json,
    copy_json,
    digest,
    is_array,
    jsonable,
    plain_scalar,
)
from .config import DEFAULT_BLOB_THRESHOLD
from .context import RecorderContext
from .errors import (
    CassetteError,
    InputDiff,
    RecordedToolError,
    ReplayError,
    ToolDiff,
    ToolNotRecordable,
    restore_fix,
)
from .modes import Mode

EFFECT = "tool_effect"  # the event kind of a replay.tool() call
REDACTIONS = ("full", "metadata_only")
STATUSES = ("succeeded", "failed", "uncertain")
HEX_INLINE_MAX = 64  # bytes outputs up to this size stay readable in the YAML as hex
TEXT_MAX = 500  # error messages and reprs are cut here

# Marker keys of stored values that are not plain JSON (one key each).
OPAQUE = "$opaque"  # any other object: {type, repr}; only its type is digested
BYTES = "$bytes"  # bytes: {blake3, len}
ARRAY = "$array"  # NumPy/CuPy array: {blake3, dtype, shape}
SET = "$set"  # set/frozenset: its items, sorted by canonical JSON

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Redacted:
    """What a ``metadata_only`` tool returns on replay: the output was never stored.

    ``digest`` is the blake3 of the output's canonical form as recorded. Use
    ``redaction="full"`` when the test needs the value itself.
    """

    operation: str
    digest: str

    def __repr__(self) -> str:
        return f"<Redacted output of {self.operation} blake3={self.digest[:16]}>"


# --- what a call took in: stored form and digest --------------------------------


def _text(value: str) -> str:
    """A repr or message without memory addresses, so re-recording gives the same bytes."""
    text = _ADDRESS.sub("", value)
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 3] + "..."


def type_name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def capture(value: Any) -> Any:
    """The stored form of an argument: JSON as is, bytes and arrays by digest, else by type.

    Containers are walked, so one odd leaf does not hide the rest of the value.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, (bool, int, float, str)):
        return plain_scalar(value)
    if isinstance(value, (list, tuple)):
        return [capture(v) for v in value]
    if isinstance(value, (set, frozenset)):
        # Sorted, so the stored form does not depend on PYTHONHASHSEED.
        items = [capture(v) for v in value]
        try:
            return {SET: sorted(items, key=canonical_json)}
        except NotCanonical:
            return _opaque(value)
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: capture(v) for k, v in value.items()}
        return _opaque(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return {BYTES: {"blake3": digest(data), "len": len(data)}}
    if is_array(value):
        import numpy as np

        host = value.get() if hasattr(value, "__cuda_array_interface__") else np.asarray(value)
        if not host.dtype.hasobject:
            data = np.ascontiguousarray(host).tobytes()
            return {
                ARRAY: {"blake3": digest(data), "dtype": str(host.dtype), "shape": list(host.shape)}
            }
        return _opaque(value)
    try:
        return jsonable(value)  # NumPy scalars
    except NotCanonical:
        return _opaque(value)


def _opaque(value: Any) -> dict[str, Any]:
    try:
        shown = repr(value)
    except Exception:  # a broken __repr__ must not break recording
        shown = "<repr failed>"
    return {OPAQUE: {"type": type_name(value), "repr": _text(shown)}}


def digest_form(stored: Any) -> Any:
    """What a digest covers: the stored form with the reprs of opaque values left out."""
    if isinstance(stored, dict):
        if len(stored) == 1 and isinstance(stored.get(OPAQUE), dict):
            return {OPAQUE: {"type": stored[OPAQUE].get("type")}}
        return {k: digest_form(v) for k, v in stored.items()}
    if isinstance(stored, list):
        return [digest_form(v) for v in stored]
    return stored


def arg_paths(stored: Mapping[str, Any]) -> dict[str, Any]:
    """``{"args[0]": ..., "kwargs.body": ...}`` from ``{"args": [...], "kwargs": {...}}``."""
    out: dict[str, Any] = {}
    for i, value in enumerate(stored.get("args", [])):
        out[f"args[{i}]"] = value
    for name, value in stored.get("kwargs", {}).items():
        out[f"kwargs.{name}"] = value
    return out


@dataclass(frozen=True)
class Inputs:
    """The arguments of a step or tool call: stored form and blake3 digest."""

    stored: dict[str, Any]
    digest: str

    @classmethod
    def of(cls, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Inputs:
        stored = {
            "args": [capture(a) for a in args],
            "kwargs": {k: capture(v) for k, v in kwargs.items()},
        }
        return cls(stored, digest(canonical_json(digest_form(stored))))

    def arg_digests(self) -> dict[str, str]:
        return {
            path: digest(canonical_json(digest_form(value)))
            for path, value in arg_paths(self.stored).items()
        }


def differing_args(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Argument paths whose values (or digests) differ; both sides map path -> value."""
    names = list(dict.fromkeys([*recorded, *current]))
    return [
        name
        for name in names
        if name not in recorded
        or name not in current
        or canonical_json(digest_form(recorded[name])) != canonical_json(digest_form(current[name]))
    ]


# --- where values live: inline in the YAML, or in the blob store -------------------


_BLOB_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,8}")


class ValueStore:
    """Puts a JSON value (or bytes) in a record inline, or in the blob store when large.

    ``write=False`` (modes that never write) still computes the blob name, so a
    record built in verify mode equals the recorded one.
    """

    def __init__(self, blobs: BlobStore, threshold: int, *, write: bool) -> None:
        self.blobs = blobs
        self.threshold = threshold
        self.write = write

    def _blob(self, data: bytes, ext: str) -> str:
        if self.write:
            return self.blobs.put(data, ext)
        return f"{digest(data)}.{ext}"

    def put_json(self, record: dict[str, Any], name: str, value: Any) -> str:
        """Store ``value`` under ``name`` (or ``<name>_blob``); return its digest."""
        plain = jsonable(value)  # raises NotCanonical
        text = canonical_json(plain)
        if len(text) > self.threshold:
            record[f"{name}_blob"] = self._blob(text.encode("utf-8"), "json")
        else:
            record[name] = plain
        return digest(text)

    def put_output(self, record: dict[str, Any], value: Any, *, keep: bool) -> None:
        """``output_digest`` always; the output itself only when ``keep`` (full redaction)."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if keep:
                if len(data) <= HEX_INLINE_MAX:
                    record["output_bytes"] = data.hex()
                else:
                    record["output_blob"] = self._blob(data, "bin")
            record["output_digest"] = digest(b"\x00bytes\x00" + data)
            return
        if keep:
            record["output_digest"] = self.put_json(record, "output", value)
        else:
            record["output_digest"] = digest(canonical_json(value))

    def get(self, record: Mapping[str, Any], name: str) -> tuple[bool, Any]:
        """(found, value) for ``name`` stored by put_json/put_output; blobs are verified."""
        if name in record:
            return True, copy_json(record[name])
        if f"{name}_bytes" in record:
            text = record[f"{name}_bytes"]
            try:
                return True, bytes.fromhex(text)
            except (TypeError, ValueError):
                raise CassetteError(
                    f"'{name}_bytes' must be hex text, got {str(text)[:40]!r}",
                    place=f"{name}_bytes",
                    fix=restore_fix(),
                ) from None
        blob = record.get(f"{name}_blob")
        if blob is None:
            return False, None
        if not isinstance(blob, str) or not _BLOB_NAME.fullmatch(blob):
            raise CassetteError(
                f"'{name}_blob' must name a blob (<64 hex digits>.<ext>), got {str(blob)[:40]!r}",
                place=f"{name}_blob",
                fix=restore_fix(),
            )
        data = self.blobs.get(blob)
        if blob.endswith(".json"):
            return True, json.loads(data.decode("utf-8"))
        return True, data


# --- errors of the code under test ------------------------------------------------


def error_snapshot(exc: BaseException) -> dict[str, str]:
    """``{type, message}`` of an exception; a replayed RecordedToolError keeps its recorded type."""
    if isinstance(exc, RecordedToolError):
        return {"type": exc.type, "message": _text(exc.message)}
    return {"type": type_name(exc), "message": _text(str(exc))}


def rebuild_error(error: Mapping[str, Any]) -> Exception:
    """The recorded exception, rebuilt as its own type when that is possible without imports.

    Only classes of modules already imported are used (a cassette never makes
    us import code), built with the recorded message as the only argument;
    otherwise a RecordedToolError carrying the recorded type name.
    """
    path, message = str(error.get("type", "Exception")), str(error.get("message", ""))
    cls = _resolve(path)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # a constructor that wants other arguments
            pass
    return RecordedToolError(path, message)


def _resolve(path: str) -> Any:
    parts = path.split(".")
    if len(parts) == 1:
        return getattr(builtins, path, None)
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: Any = module
        for name in parts[cut:]:
            obj = getattr(obj, name, None)
        return obj
    return None


# Exceptions after which the effect may or may not have happened: the request
# may have reached the provider before the connection or the clock gave out.
UNCERTAIN_TYPES: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


def classify(exc: BaseException, uncertain_on: tuple[type[BaseException], ...] = ()) -> str:
    """``uncertain`` when the call may have taken effect before it raised, else ``failed``.

    Uncertain: a timeout (TimeoutError, or any class named ``*Timeout*``, as
    requests/httpx/aiohttp name theirs), a connection lost mid-call
    (reset/aborted/broken pipe), or a type listed in ``uncertain_on``.
    Anything else is taken to have failed before any effect.
    """
    if isinstance(exc, RecordedToolError):
        return "failed"
    if isinstance(exc, UNCERTAIN_TYPES + tuple(uncertain_on)):
        return "uncertain"
    if any("Timeout" in cls.__name__ for cls in type(exc).__mro__):
        return "uncertain"
    return "failed"


# --- where a call happens: a step attempt or the test body --------------------------


@dataclass(eq=False)
class Scope:
    """A step attempt (or the test body) collecting its tool events.

    ``recorded`` holds the events to serve tool calls from on replay (None
    when tools run live); ``failed`` is set by the step when the attempt raised.
    """

    label: str  # "plan#0", or "test"
    attempt: int  # from 1; 0 for the test body
    order: int  # call-order position of the step, for listing effects in call order
    recorded: list[dict[str, Any]] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    failed: bool = False
    calls: int = 0  # tool effects asked for so far
    shown: str = ""  # the step as messages name it ("plan", "plan#1")
    _effects: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def is_test(self) -> bool:
        return self.attempt == 0

    def describe(self) -> str:
        if self.is_test:
            return "the test body"
        return f"step {self.shown or self.label} attempt {self.attempt}"

    def effect_id(self, k: int) -> str:
        return f"test/{k}" if self.is_test else f"{self.label}/{self.attempt}/{k}"

    def recorded_effects(self) -> list[dict[str, Any]]:
        """The recorded tool effects here, in order (plain events left out)."""
        if self._effects is None:
            self._effects = [e for e in self.recorded or [] if e.get("kind") == EFFECT]
        return self._effects


current_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "pytest_replay_tool_scope", default=None
)


@dataclass(eq=False)
class _Effect:
    """One effect of this run, with what the resume plan needs to judge it."""

    order: tuple[int, int, int]
    event: dict[str, Any]
    scope: Scope
    result: Any = None  # what the call returned (for a duplicate of it)


@dataclass(eq=False)
class _Call:
    operation: str
    scope: Scope
    k: int
    order: tuple[int, int, int]
    inputs: Inputs
    redaction: str
    provider: str | None
    target: str | None
    idempotency_key: str | None
    compensation: str | None

    @property
    def id(self) -> str:
        return self.scope.effect_id(self.k)

    def event(self, status: str, store: ValueStore) -> dict[str, Any]:
        """The effect as recorded: metadata and digests, payloads only for ``full``."""
        event: dict[str, Any] = {
            "kind": EFFECT,
            "id": self.id,
            "operation": self.operation,
            "status": status,
            "redaction": self.redaction,
            "input_digest": self.inputs.digest,
        }
        for key in ("provider", "target", "idempotency_key", "compensation"):
            if getattr(self, key) is not None:
                event[key] = getattr(self, key)
        if self.redaction == "full":
            store.put_json(event, "inputs", self.inputs.stored)
        else:
            event["arg_digests"] = self.inputs.arg_digests()
        return event


# --- the resume plan --------------------------------------------------------------


@dataclass(frozen=True)
class ResumePlan:
    """What an operator faces after a partial failure; nothing here is dispatched.

    ``completed``: effects that succeeded. ``uncertain``: effects that may or
    may not have happened. ``dead_letters``: failed and uncertain effects.
    ``pending_compensations``: effects with a compensation that is owed (the
    effect is uncertain, or it succeeded in a step attempt that then failed).
    An effect is superseded, and left out, when a later effect with the same
    idempotency key succeeded (or reused it); superseded ones are dropped
    before ``limit`` applies. Counts are totals; the lists hold up to ``limit``.
    """

    completed: int = 0
    uncertain: int = 0
    dead_letter_count: int = 0
    pending_compensation_count: int = 0
    dead_letters: tuple[dict[str, Any], ...] = ()
    pending_compensations: tuple[dict[str, Any], ...] = ()
    operator_choices: tuple[dict[str, Any], ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        return {
            "completed": self.completed,
            "uncertain": self.uncertain,
            "dead_letters": self.dead_letter_count,
            "pending_compensations": self.pending_compensation_count,
        }

    @property
    def needs_operator(self) -> bool:
        return bool(self.uncertain or self.dead_letter_count or self.pending_compensation_count)

    @property
    def choices(self) -> list[str]:
        return [c["choice"] for c in self.operator_choices]

    def describe(self) -> str:
        """One line for failure reports."""
        c = self.counts
        text = (
            f"resume plan: {c['completed']} completed, {c['uncertain']} uncertain, "
            f"{c['dead_letters']} dead letter(s), {c['pending_compensations']} pending "
            "compensation(s)"
        )
        if self.operator_choices:
            text += f"; operator choices: {', '.join(self.choices)} (none dispatched automatically)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "dead_letters": [dict(d) for d in self.dead_letters],
            "pending_compensations": [dict(p) for p in self.pending_compensations],
            "operator_choices": [dict(c) for c in self.operator_choices],
        }

    @classmethod
    def build(cls, effects: list[_Effect], limit: int | None = None) -> ResumePlan:
        effects = sorted(effects, key=lambda e: e.order)
        superseded = _superseded(effects)
        completed = uncertain = 0
        dead: list[dict[str, Any]] = []
        owed: list[dict[str, Any]] = []
        for effect in effects:
            event = effect.event
            if event.get("duplicate_of") is not None:
                continue  # not dispatched: nothing happened
            status = event["status"]
            if status == "succeeded":
                completed += 1
            if effect.event["id"] in superseded:
                continue
            if status == "uncertain":
                uncertain += 1
            if status in ("failed", "uncertain"):
                options = ["retry"] + (["compensate"] if event.get("compensation") else [])
                dead.append({**_summary(event), "recovery_options": options})
            if event.get("compensation") and (
                status == "uncertain" or (status == "succeeded" and effect.scope.failed)
            ):
                reason = (
                    "the effect may have happened"
                    if status == "uncertain"
                    else f"its {effect.scope.describe()} failed after it succeeded"
                )
                owed.append(
                    {
                        **_summary(event),
                        "compensation": event["compensation"],
                        "reason": reason,
                        "status": "awaiting_operator",
                    }
                )
        choices: list[dict[str, Any]] = []
        if dead or owed:
            choices.append(
                {
                    "choice": "resume_from_checkpoint",
                    "execution_mode": "operator_request_record_only",
                    "automatic_dispatch": False,
                    "skips_completed": completed,
                }
            )
        if dead:
            choices.append(
                {
                    "choice": "retry_failed_effect",
                    "execution_mode": "operator_request_record_only",
                    "automatic_dispatch": False,
                    "effects": [d["effect"] for d in dead],
                }
            )
        if owed:
            choices.append(
                {
                    "choice": "compensate_pending_effects",
                    "execution_mode": "operator_runbook_record_only",
                    "automatic_dispatch": False,
                    "effects": [o["effect"] for o in owed],
                }
            )
        cut = slice(None) if limit is None else slice(0, max(limit, 0))
        return cls(
            completed=completed,
            uncertain=uncertain,
            dead_letter_count=len(dead),
            pending_compensation_count=len(owed),
            dead_letters=tuple(dead[cut]),
            pending_compensations=tuple(owed[cut]),
            operator_choices=tuple(choices),
        )


def _superseded(effects: list[_Effect]) -> set[str]:
    """Ids of effects followed by a success (or a reuse) with the same idempotency key."""
    out: set[str] = set()
    last_success: dict[str, int] = {}
    for i, effect in enumerate(effects):
        key = effect.event.get("idempotency_key")
        if key is not None and effect.event["status"] == "succeeded":
            last_success[key] = i
    for i, effect in enumerate(effects):
        key = effect.event.get("idempotency_key")
        if key is not None and last_success.get(key, -1) > i:
            out.add(effect.event["id"])
    return out


def _summary(event: Mapping[str, Any]) -> dict[str, Any]:
    out = {"effect": event["id"], "operation": event["operation"], "status": event["status"]}
    for key in ("provider", "target", "idempotency_key", "error"):
        if event.get(key) is not None:
            out[key] = event[key]
    return out


# --- the recorder -------------------------------------------------------------------


class ToolRecorder:
    """``replay.tool`` / ``atool`` / ``tool_event`` / ``resume_plan`` and the ``tools:`` section.

    Effects made inside a step are stored with that step's attempt; effects
    and events made in the test body are the ``tools:`` section. On replay a
    tool call is served from the recording and ``fn`` is not called.
    """

    def __init__(self, ctx: RecorderContext, threshold: int) -> None:
        self.ctx = ctx
        self._live = ctx.mode.live_io
        self._strict_values = ctx.mode is not Mode.OFF  # off mode never fails on storage
        self.store = ValueStore(ctx.blobs, threshold, write=ctx.mode.records)
        self._lock = threading.Lock()
        self._positions = itertools.count()
        self._effects: list[_Effect] = []
        self._keys: dict[str, _Effect] = {}  # idempotency key -> effect that succeeded
        self._key_locks: dict[str, threading.Lock] = {}
        self.recorded_test_events: list[dict[str, Any]] | None = None
        if ctx.recorded is not None:
            self.recorded_test_events = load_events(
                ctx.section("tools", []), "tools", ctx.shown, self.store
            )
        self.test_scope = Scope(
            "test",
            0,
            order=0,
            recorded=None if self._live else list(self.recorded_test_events or []),
        )

    def next_position(self) -> int:
        """A call-order position; steps take theirs when they start."""
        return next(self._positions)

    def scope(self) -> Scope:
        return current_scope.get() or self.test_scope

    # -- public API ----------------------------------------------------------------

    def tool(
        self,
        operation: str,
        fn: Callable[..., Any],
        *args: Any,
        idempotency_key: str | None = None,
        redaction: str = "full",
        provider: str | None = None,
        target: str | None = None,
        compensation: Callable[..., Any] | str | None = None,
        uncertain_on: tuple[type[BaseException], ...] = (),
        **kwargs: Any,
    ) -> Any:
        """Call ``fn`` as a side effect (recorded); on replay return the recorded result."""
        __tracebackhide__ = True
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"replay.tool({operation!r}, ...) got a coroutine function; "
                f"use: await replay.atool({operation!r}, fn, ...)"
            )
        call = self._call(
            operation, args, kwargs, idempotency_key, redaction, provider, target, compensation
        )
        done, result = self._before_dispatch(call)
        if done:
            return result
        lock = self._key_lock(call)
        with lock if lock is not None else contextlib.nullcontext():
            done, result = self._reuse(call)  # another thread may have succeeded meanwhile
            if done:
                return result
            try:
                value = fn(*args, **kwargs)
            except ReplayError:
                raise
            except Exception as exc:
                self._raised(call, exc, uncertain_on)
                raise
            if inspect.iscoroutine(value):
                value.close()
                raise TypeError(
                    f"replay.tool({operation!r}, ...) got a coroutine; "
                    f"use: await replay.atool({operation!r}, fn, ...)"
                )
            return self._succeeded(call, value)

    async def atool(
        self,
        operation: str,
        fn: Callable[..., Any],
        *args: Any,
        idempotency_key: str | None = None,
        redaction: str = "full",
        provider: str | None = None,
        target: str | None = None,
        compensation: Callable[..., Any] | str | None = None,
        uncertain_on: tuple[type[BaseException], ...] = (),
        **kwargs: Any,
    ) -> Any:
        """``tool`` for a coroutine function: awaited only when the effect runs live."""
        __tracebackhide__ = True
        call = self._call(
            operation, args, kwargs, idempotency_key, redaction, provider, target, compensation
        )
        done, result = self._before_dispatch(call)
        if done:
            return result
        lock = self._key_lock(call)
        if lock is not None and not lock.acquire(blocking=False):
            # Wait in a worker thread: the holder may be a task on this very loop.
            await asyncio.to_thread(lock.acquire)
        try:
            done, result = self._reuse(call)
            if done:
                return result
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):  # a plain function is accepted too
                    value = await value
            except ReplayError:
                raise
            except Exception as exc:
                self._raised(call, exc, uncertain_on)
                raise
            return self._succeeded(call, value)
        finally:
            if lock is not None:
                lock.release()

    def tool_event(self, kind: str, payload: Any = None, **meta: Any) -> None:
        """Record a plain tool event (no callable) in the running step, or the test body."""
        __tracebackhide__ = True
        if not isinstance(kind, str) or not kind or kind == EFFECT:
            raise TypeError(f"tool_event kind must be a non-empty str other than {EFFECT!r}")
        event = {"kind": kind, "payload": payload, **meta}
        try:
            event = jsonable(event)
        except NotCanonical as exc:
            if self._strict_values:
                raise self._not_recordable(f"tool event {kind!r}", event, exc) from None
        scope = self.scope()
        with self._lock:
            scope.events.append(event)

    def resume_plan(self, limit: int | None = None) -> ResumePlan:
        """Counts and operator choices for this run's effects so far (nothing is dispatched)."""
        with self._lock:
            effects = list(self._effects)
        return ResumePlan.build(effects, limit)

    @property
    def effect_count(self) -> int:
        return len(self._effects)

    # -- steps hand over effects they did not run (mocked replay) -------------------

    def adopt(self, scope: Scope, events: list[dict[str, Any]]) -> None:
        """Count a mocked step's recorded effects as this run's (resume plan, idempotency)."""
        with self._lock:
            k = 0
            for event in events:
                if event.get("kind") != EFFECT:
                    continue
                effect = _Effect((scope.order, scope.attempt, k), event, scope)
                k += 1
                self._effects.append(effect)
                key = event.get("idempotency_key")
                if (
                    key is not None
                    and event["status"] == "succeeded"
                    and key not in self._keys
                    and event.get("duplicate_of") is None
                ):
                    found, value = self._served_output(event)
                    effect.result = value if found else None
                    self._keys[key] = effect

    # -- internals ------------------------------------------------------------------

    def _call(
        self,
        operation: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: Any,
        redaction: Any,
        provider: Any,
        target: Any,
        compensation: Any,
    ) -> _Call:
        __tracebackhide__ = True
        if not isinstance(operation, str) or not operation:
            raise TypeError(f"replay.tool operation must be a non-empty str, got {operation!r}")
        if redaction not in REDACTIONS:
            raise ValueError(f"redaction={redaction!r}; expected one of {', '.join(REDACTIONS)}")
        for name, value in (
            ("idempotency_key", idempotency_key),
            ("provider", provider),
            ("target", target),
        ):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"replay.tool({operation!r}, {name}=...) must be a str or None")
        if compensation is not None and not isinstance(compensation, str):
            compensation = _callable_name(compensation)
        scope = self.scope()
        with self._lock:
            k = scope.calls
            scope.calls += 1
            position = self.next_position() if scope.is_test else scope.order
        return _Call(
            operation=operation,
            scope=scope,
            k=k,
            order=(position, scope.attempt, k),
            inputs=Inputs.of(args, kwargs),
            redaction=redaction,
            provider=provider,
            target=target,
            idempotency_key=idempotency_key,
            compensation=compensation,
        )

    def _before_dispatch(self, call: _Call) -> tuple[bool, Any]:
        """Replay: check and serve the recorded effect. Live: reuse a succeeded key."""
        __tracebackhide__ = True
        if self._live:
            return self._reuse(call)
        recorded = self._check_recorded(call)
        done, result = self._reuse(call)
        if done:
            return done, result
        event = copy_json(recorded)
        if event["status"] == "succeeded":
            found, value = self._served_output(event)
            self._add(call, event, value if found else None)
            return True, value
        self._add(call, event, None)
        raise rebuild_error(event.get("error") or {})

    def _served_output(self, event: Mapping[str, Any]) -> tuple[bool, Any]:
        if event.get("redaction") == "metadata_only":
            return True, Redacted(event["operation"], event.get("output_digest", ""))
        return self.store.get(event, "output")

    def _reuse(self, call: _Call) -> tuple[bool, Any]:
        """A second effect with a key that already succeeded: flagged, never dispatched."""
        key = call.idempotency_key
        if key is None:
            return False, None
        with self._lock:
            first = self._keys.get(key)
        if first is None:
            return False, None
        event = call.event(first.event["status"], self.store)
        event["duplicate_of"] = first.event["id"]
        if "output_digest" in first.event:
            event["output_digest"] = first.event["output_digest"]
        self._add(call, event, first.result)
        return True, _copy_result(first.result)

    def _key_lock(self, call: _Call) -> threading.Lock | None:
        if call.idempotency_key is None:
            return None
        with self._lock:
            return self._key_locks.setdefault(call.idempotency_key, threading.Lock())

    def _succeeded(self, call: _Call, value: Any) -> Any:
        __tracebackhide__ = True
        event = call.event("succeeded", self.store)
        try:
            self.store.put_output(event, value, keep=call.redaction == "full")
        except NotCanonical as exc:
            if self._strict_values:
                raise self._not_recordable(
                    f"the output of tool {call.operation!r}", value, exc
                ) from None
        self._add(call, event, value)
        return value

    def _raised(
        self, call: _Call, exc: Exception, uncertain_on: tuple[type[BaseException], ...]
    ) -> None:
        event = call.event(classify(exc, uncertain_on), self.store)
        event["error"] = error_snapshot(exc)
        self._add(call, event, None)

    def _add(self, call: _Call, event: dict[str, Any], result: Any) -> None:
        effect = _Effect(call.order, event, call.scope, result)
        with self._lock:
            call.scope.events.append(event)
            self._effects.append(effect)
            key = call.idempotency_key
            if (
                key is not None
                and event["status"] == "succeeded"
                and event.get("duplicate_of") is None
                and key not in self._keys
            ):
                self._keys[key] = effect

    def _check_recorded(self, call: _Call) -> dict[str, Any]:
        """The recorded effect this call replays; its operation and inputs must match."""
        __tracebackhide__ = True
        scope = call.scope
        effects = scope.recorded_effects()
        where = f"{scope.describe()}, tool call #{call.k}"
        if call.k >= len(effects):
            raise self.ctx.error(
                ToolDiff(
                    f"tool call {call.operation!r} in {scope.describe()} was not recorded",
                    place=where,
                    recorded=f"{len(effects)} tool effect(s) here"
                    + (f": {', '.join(e['operation'] for e in effects)}" if effects else ""),
                    current=f"call #{call.k + 1}: {call.operation}",
                    fix="the code makes a tool call the recording does not have; if that is "
                    "intended, re-record: pytest --replay=record {test}",
                )
            )
        recorded = effects[call.k]
        if recorded["operation"] != call.operation:
            raise self.ctx.error(
                ToolDiff(
                    f"tool call #{call.k} in {scope.describe()} is {call.operation!r}; "
                    f"the recording has {recorded['operation']!r} there",
                    place=where,
                    recorded=recorded["operation"],
                    current=call.operation,
                    fix="the order of tool calls changed; if that is intended, re-record: "
                    "pytest --replay=record {test}",
                )
            )
        if recorded["input_digest"] != call.inputs.digest:
            raise self.ctx.error(self._input_diff(call, recorded, where))
        return recorded

    def _input_diff(self, call: _Call, recorded: Mapping[str, Any], where: str) -> InputDiff:
        if "arg_digests" in recorded:
            old: dict[str, Any] = dict(recorded["arg_digests"])
            new: dict[str, Any] = call.inputs.arg_digests()
        else:
            found, stored = self.store.get(recorded, "inputs")
            old = arg_paths(stored) if found and isinstance(stored, dict) else {}
            new = arg_paths(call.inputs.stored)
        names = differing_args(old, new) or ["(the arguments as a whole)"]
        first = names[0]
        details = [f"differing argument(s): {', '.join(names)}"]
        if "arg_digests" in recorded:
            details.append("metadata_only: only digests were recorded, so values are not shown")
        else:
            details.extend(input_changes(old, new, names))
        return InputDiff(
            f"inputs of tool call {call.operation!r} changed since the recording: "
            f"{', '.join(names)}",
            place=f"{where}: {first}",
            recorded=old.get(first, recorded["input_digest"]),
            current=new.get(first, call.inputs.digest),
            details=details,
            payload={
                "operation": call.operation,
                "effect": call.id,
                "arguments": names,
                "recorded_digest": recorded["input_digest"],
                "current_digest": call.inputs.digest,
            },
            fix="a tool effect replays only for the inputs it was recorded with; if the new "
            "inputs are right, re-record: pytest --replay=record {test}",
        )

    def _not_recordable(self, what: str, value: Any, exc: Exception) -> ReplayError:
        hint = (
            "; it holds a Redacted placeholder: use redaction='full' for tools whose output "
            "the test keeps"
            if "Redacted" in str(exc)
            else ""
        )
        return self.ctx.error(
            ToolNotRecordable(
                f"{what} cannot be stored: {exc}{hint}",
                current=f"{type(value).__name__}: {value!r}"[:200],
                fix="return JSON-able data (dict with str keys, list, str, number, bool, None) "
                "or bytes",
            )
        )

    # -- Recorder protocol ----------------------------------------------------------

    def to_yaml(self) -> dict[str, Any]:
        if not self.ctx.mode.records:
            return {}
        sections: dict[str, Any] = {}
        if self.test_scope.events:
            sections["tools"] = self.test_scope.events
        plan = self.resume_plan()
        if plan.needs_operator:
            sections["resume"] = plan.to_dict()
        return sections

    def unused(self) -> list[str]:
        if self._live:
            return []
        effects = self.test_scope.recorded_effects()
        return [
            f"tool effect {e['operation']!r} ({e.get('id', f'test/{k}')})"
            for k, e in enumerate(effects)
            if k >= self.test_scope.calls
        ]

    @property
    def new_count(self) -> int:
        return 0  # a replay never appends effects: an unrecorded call fails

    def finish(self) -> None:
        """Tool-event parity of the test body is checked by the step recorder."""

    def save_files(self) -> None:
        """Nothing beside the cassette: large values go to the blob store."""


def _callable_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    return _text(f"{module}.{name}" if module and module != "builtins" else str(name))


def _copy_result(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return copy_json(value)
    try:
        return copy.deepcopy(value)
    except Exception:  # an object that cannot be copied is handed out as it is
        return value


def input_changes(old: Mapping[str, Any], new: Mapping[str, Any], names: list[str]) -> list[str]:
    """The change table of the differing arguments (deepdiff is imported only here)."""
    from .compare.snapshot import ChangeType, FieldChange, diff_snapshot, render_changes

    changes: list[FieldChange] = []
    for name in names:
        if name not in old or name not in new:
            added = name not in old
            changes.append(
                FieldChange(
                    name,
                    None if added else digest_form(old[name]),
                    digest_form(new[name]) if added else None,
                    ChangeType.ADDED if added else ChangeType.REMOVED,
                )
            )
            continue
        for c in diff_snapshot(digest_form(old[name]), digest_form(new[name])):
            path = name + (c.path if c.path.startswith("[") or not c.path else f".{c.path}")
            changes.append(FieldChange(path, c.old, c.new, c.change))
    return render_changes(changes)


# --- loading ------------------------------------------------------------------------


def load_events(section: Any, where: str, shown: str, store: ValueStore) -> list[dict[str, Any]]:
    """Validate a list of tool events from a cassette; blobs they name are verified."""
    if section is None:
        return []
    if not isinstance(section, list):
        raise _bad(shown, where, "must be a list of tool events")
    for i, event in enumerate(section):
        place = f"{where}[{i}]"
        if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
            raise _bad(shown, place, "must be a mapping with a 'kind'")
        if event["kind"] != EFFECT:
            continue
        if not isinstance(event.get("operation"), str) or not isinstance(event.get("id"), str):
            raise _bad(shown, place, "a tool effect needs 'id' and 'operation' strings")
        if event.get("status") not in STATUSES:
            raise _bad(shown, place, f"status must be one of {', '.join(STATUSES)}")
        if event.get("redaction") not in REDACTIONS:
            raise _bad(shown, place, f"redaction must be one of {', '.join(REDACTIONS)}")
        if not isinstance(event.get("input_digest"), str) or not _HEX64.fullmatch(
            event["input_digest"]
        ):
            raise _bad(shown, place, "input_digest must be 64 hex digits")
        if event["redaction"] == "metadata_only" and any(
            k in event for k in ("output", "output_bytes", "output_blob", "inputs", "inputs_blob")
        ):
            raise _bad(shown, place, "a metadata_only effect must not hold payloads")
        for name in ("inputs", "output"):
            if f"{name}_blob" in event or f"{name}_bytes" in event:
                # Checks the form, and a blob's digest, now rather than mid-test.
                store.get(event, name)
    return section


def _bad(shown: str, place: str, what: str) -> CassetteError:
    return CassetteError(
        f"{place.split('[')[0]} section is malformed: {place} {what}",
        cassette=shown,
        place=place,
        fix=restore_fix(),
    )


@contextlib.contextmanager
def in_scope(scope: Scope) -> Iterator[Scope]:
    """Tool calls inside the block belong to ``scope`` (steps use it per attempt)."""
    token = current_scope.set(scope)
    try:
        yield scope
    finally:
        current_scope.reset(token)


def install(session: Any) -> ToolRecorder:
    threshold = session.settings.get("blob_threshold", DEFAULT_BLOB_THRESHOLD)
    recorder = ToolRecorder(session.context, threshold)
    session.tool = recorder.tool
    session.atool = recorder.atool
    session.tool_event = recorder.tool_event
    session.resume_plan = recorder.resume_plan
    return recorder
