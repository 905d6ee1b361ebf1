"""Step outputs: a step's inputs, attempts and output recorded; replayed live or mocked."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import difflib
import importlib
import inspect
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .canonical import NotCanonical, copy_json, jsonable
from .cassette import is_count
from .context import RecorderContext
from .errors import (
    AttestationDiff,
    CassetteError,
    DriftExceeded,
    InputDiff,
    MissingStep,
    PolicyViolation,
    ReplayError,
    StepNotRecordable,
    ToolDiff,
    rerecord_fix,
    restore_fix,
)
from .facts import FactLog, taken
from .facts import lane as fact_lane
from .facts import scope as fact_scope
from .modes import Mode
from .tools import (
    Inputs,
    Scope,
    ToolRecorder,
    ValueStore,
    arg_paths,
    differing_args,
    error_snapshot,
    in_scope,
    input_changes,
    load_events,
)

STRATEGIES = ("live", "mocked")
MATCHES = ("strict", "tolerant")
STATUSES = ("succeeded", "failed")
TEST_BODY = "(test body)"  # the step name tool-event parity reports for the test body

_HEX64 = re.compile(r"[0-9a-f]{64}")

# Steps started inside a step attempt, so a mocked replay of the outer step
# can account for the inner ones it does not run.
_children: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "pytest_replay_child_steps", default=None
)

_ERRORS: dict[str, type[ReplayError]] = {
    "replay_attestation_diff": AttestationDiff,
    "replay_tool_diff": ToolDiff,
    "replay_policy": PolicyViolation,
    "replay_drift": DriftExceeded,
}
_FIXES = {
    "replay_attestation_diff": "attestation ids must replay unchanged; if the new ids are "
    "intended, re-record: pytest --replay=record {test}",
    "replay_tool_diff": "the step's tool calls changed; if that is intended, re-record: "
    "pytest --replay=record {test}",
    "replay_policy": "fix the regression, or relax the policy rule; if the new output is "
    "right, re-record: pytest --replay=record {test}",
    "replay_drift": "if the new output is right, re-record: pytest --replay=record {test}  "
    "(or allow the drift: tolerance=replay.Drift(tokens=..., cost=...))",
}


def step_key(name: str, ordinal: int) -> str:
    """``plan#0``: the step's identity in fact scopes, tool effect ids and nesting."""
    return f"{name}#{ordinal}"


def step_label(name: str, ordinal: int) -> str:
    """How messages name a step: ``plan`` for its first call, ``plan#1`` for the second."""
    return name if ordinal == 0 else step_key(name, ordinal)


# --- records ------------------------------------------------------------------------


@dataclass
class Attempt:
    """One run of a step's function: output or error, duration, tool events, facts taken."""

    attempt: int  # from 1
    status: str  # succeeded | failed
    output: Any = None  # the output snapshot (JSON), when succeeded
    error: dict[str, str] | None = None  # {type, message}, when failed
    duration_ms: float = 0.0  # stored, never compared
    tool_events: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, int] = field(default_factory=dict)  # fact key -> values taken
    steps: list[str] = field(default_factory=list)  # steps run inside (``inner#0``)

    @property
    def has_snapshot(self) -> bool:
        return self.status == "succeeded"

    def to_yaml(self, store: ValueStore) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attempt": self.attempt,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "tool_events": self.tool_events,
        }
        if self.has_snapshot:
            store.put_json(out, "output", self.output)
        if self.error is not None:
            out["error"] = self.error
        if self.facts:
            out["facts"] = dict(self.facts)
        if self.steps:
            out["steps"] = list(self.steps)
        return out

    @classmethod
    def from_yaml(cls, data: Any, where: str, shown: str, store: ValueStore) -> Attempt:
        if not isinstance(data, dict):
            raise _bad(shown, where, "must be a mapping")
        number, status = data.get("attempt"), data.get("status")
        if not is_count(number) or number < 1:
            raise _bad(shown, where, "'attempt' must be an integer >= 1")
        if status not in STATUSES:
            raise _bad(shown, where, f"'status' must be one of {', '.join(STATUSES)}")
        found, output = store.get(data, "output")
        if status == "succeeded" and not found:
            raise _bad(shown, where, "a succeeded attempt needs its 'output'")
        error = data.get("error")
        if status == "failed" and not (
            isinstance(error, dict)
            and isinstance(error.get("type"), str)
            and isinstance(error.get("message"), str)
        ):
            raise _bad(shown, where, "a failed attempt needs 'error: {type, message}'")
        facts = data.get("facts", {})
        if not isinstance(facts, dict) or not all(
            isinstance(k, str) and is_count(v) for k, v in facts.items()
        ):
            raise _bad(shown, where, "'facts' must map fact keys to counts")
        steps = data.get("steps", [])
        if not isinstance(steps, list) or not all(isinstance(s, str) and "#" in s for s in steps):
            raise _bad(shown, where, "'steps' must list step keys like 'name#0'")
        duration = data.get("duration_ms", 0.0)
        events = load_events(data.get("tool_events", []), f"{where}.tool_events", shown, store)
        return cls(
            attempt=number,
            status=status,
            output=output if found else None,
            error=error,
            duration_ms=float(duration) if isinstance(duration, (int, float)) else 0.0,
            tool_events=events,
            facts=facts,
            steps=steps,
        )


@dataclass
class StepRecord:
    """A step call as the cassette holds it: name, ordinal, inputs and every attempt."""

    name: str
    ordinal: int  # the k-th call of this name in the test, from 0
    input_digest: str
    inputs: Any  # stored form: {"args": [...], "kwargs": {...}}
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def key(self) -> str:
        return step_key(self.name, self.ordinal)

    @property
    def label(self) -> str:
        return step_label(self.name, self.ordinal)

    def to_yaml(self, store: ValueStore) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "ordinal": self.ordinal,
            "input_digest": self.input_digest,
            "attempts": [a.to_yaml(store) for a in self.attempts],
        }
        store.put_json(out, "inputs", self.inputs)
        return out

    @classmethod
    def from_yaml(cls, data: Any, where: str, shown: str, store: ValueStore) -> StepRecord:
        if not isinstance(data, dict):
            raise _bad(shown, where, "must be a mapping")
        name, ordinal, digest = data.get("name"), data.get("ordinal"), data.get("input_digest")
        if not isinstance(name, str) or not name:
            raise _bad(shown, where, "'name' must be a non-empty string")
        if not is_count(ordinal):
            raise _bad(shown, where, "'ordinal' must be an integer >= 0")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _bad(shown, where, "'input_digest' must be 64 hex digits")
        found, inputs = store.get(data, "inputs")
        if not found:
            raise _bad(shown, where, "'inputs' is missing")
        attempts = data.get("attempts")
        if not isinstance(attempts, list):
            raise _bad(shown, where, "'attempts' must be a list")
        return cls(
            name=name,
            ordinal=ordinal,
            input_digest=digest,
            inputs=inputs,
            attempts=[
                Attempt.from_yaml(a, f"{where}.attempts[{i}]", shown, store)
                for i, a in enumerate(attempts)
            ],
        )


def select_attempt_pair(attempts: list[Attempt]) -> tuple[Attempt, Attempt] | None:
    """(baseline, latest): the first and the last attempt with an output snapshot."""
    with_snapshot = [a for a in attempts if a.has_snapshot]
    if not with_snapshot:
        return None
    return with_snapshot[0], with_snapshot[-1]


def load_steps(section: Any, shown: str, store: ValueStore) -> list[StepRecord]:
    """Parse and validate the ``steps:`` section (blobs it names are verified)."""
    if section is None:
        return []
    if not isinstance(section, list):
        raise _bad(shown, "steps", "must be a list of step records")
    records = [StepRecord.from_yaml(s, f"steps[{i}]", shown, store) for i, s in enumerate(section)]
    seen: set[tuple[str, int]] = set()
    for i, record in enumerate(records):
        if (record.name, record.ordinal) in seen:
            raise _bad(shown, f"steps[{i}]", f"repeats step {record.key}")
        seen.add((record.name, record.ordinal))
    return records


def check_sections(doc: Mapping[str, Any], blobs: Any, shown: str) -> None:
    """Validate the ``steps:`` and ``tools:`` sections of a loaded cassette (for ``check``)."""
    store = ValueStore(blobs, 0, write=False)
    load_steps(doc.get("steps"), shown, store)
    load_events(doc.get("tools"), "tools", shown, store)
    resume = doc.get("resume")
    if resume is not None and not isinstance(resume, dict):
        raise _bad(shown, "resume", "must be a mapping")


def _bad(shown: str, place: str, what: str) -> CassetteError:
    return CassetteError(
        f"steps section is malformed: {place} {what}",
        cassette=shown,
        place=place,
        fix=restore_fix(),
    )


# --- batch results ------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayStats:
    """Counts and timings of a step_batch, from its real runs.

    ``successful``: items whose step returned; ``failed``: items whose
    function raised (after retries) or whose replay check failed.
    ``exact_matches``/``mismatches`` split the successful items whose output
    was compared with a recording: identical, or different but within the
    tolerance/policy; both are 0 when nothing was compared (record, off).
    ``total_ms`` sums the successful items' step durations and
    ``average_ms`` is that over ``successful`` (0.0 when none).
    """

    total: int
    successful: int
    failed: int
    exact_matches: int
    mismatches: int
    total_ms: float
    average_ms: float

    def describe(self) -> str:
        return (
            f"{self.total} item(s): {self.successful} successful, {self.failed} failed, "
            f"{self.exact_matches} exact, {self.mismatches} within tolerance; "
            f"{self.total_ms:.3f} ms total, {self.average_ms:.3f} ms average"
        )


class BatchResult(NamedTuple):
    """What step_batch returns: ``results, stats = replay.step_batch(...)``."""

    results: list[Any]
    stats: ReplayStats


# --- one step call in progress --------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    strategy: str
    match: str
    tolerance: Any
    policy: Any
    retries: int


@dataclass(eq=False)
class _Run:
    name: str
    ordinal: int
    position: int
    options: _Options
    inputs: Inputs
    recorded: StepRecord | None = None
    attempts: list[Attempt] = field(default_factory=list)
    exact: bool | None = None  # output identical to the recording (None: not compared)
    started: float = field(default_factory=time.perf_counter)
    duration_ms: float = 0.0

    @property
    def key(self) -> str:
        return step_key(self.name, self.ordinal)

    @property
    def label(self) -> str:
        return step_label(self.name, self.ordinal)


class _Attempt:
    """One attempt running: its fact scope, tool scope and the sinks for facts and steps."""

    def __init__(self, run: _Run, number: int, served: list[dict[str, Any]] | None) -> None:
        self.number = number
        self.scope = Scope(run.key, number, run.position, recorded=served, shown=run.label)
        self.children: list[str] = []
        self.keys: list[str] = []
        self.duration_ms = 0.0
        self._key = run.key
        self._stack = contextlib.ExitStack()
        self._start = 0.0

    def __enter__(self) -> _Attempt:
        self._start = time.perf_counter()
        self._stack.enter_context(fact_scope(self._key, self.number))
        self.keys = self._stack.enter_context(taken())
        self._stack.enter_context(in_scope(self.scope))
        token = _children.set(self.children)
        self._stack.callback(_children.reset, token)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.duration_ms = (time.perf_counter() - self._start) * 1000.0
        self._stack.close()

    def record(self, status: str, output: Any = None, error: Any = None) -> Attempt:
        return Attempt(
            attempt=self.number,
            status=status,
            output=output,
            error=error,
            duration_ms=self.duration_ms,
            tool_events=list(self.scope.events),
            facts=dict(Counter(self.keys)),
            steps=list(self.children),
        )


@dataclass
class _Outcome:
    run: _Run | None
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _LazyClass:
    """``replay.Drift`` / ``replay.Policy`` without importing the comparison library up front."""

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self._module), self._name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self._module}.{self._name}>"


# --- the recorder ---------------------------------------------------------------------


class StepRecorder:
    """``replay.step`` / ``astep`` / ``step_batch`` and the ``steps:`` section.

    record: run the function (retrying as asked), keep every attempt.
    replay, strict: ``live`` runs it again and compares the output with the
    recording; ``mocked`` returns the recorded output without running it,
    after checking the inputs. verify: every step runs live and is compared.
    off: run it, keep nothing.
    """

    def __init__(self, ctx: RecorderContext, facts: FactLog, tools: ToolRecorder) -> None:
        self.ctx = ctx
        self.facts = facts
        self.tools = tools
        self.store = tools.store
        self._records = ctx.mode.records
        self._checks = ctx.mode.checks_outputs and ctx.recorded is not None
        self._off = ctx.mode is Mode.OFF
        self._serve = not ctx.mode.live_io  # tool calls in a replayed step are served
        # verify runs everything live: a 'mocked' step runs too, and is compared.
        self._mock = not ctx.mode.live_io
        self._lock = threading.Lock()
        self._ordinals: dict[str, int] = {}
        # call-order position -> the record as YAML (record mode). Encoded when the
        # step ends, so its blobs are staged before the session flushes them.
        self._new: dict[int, dict[str, Any]] = {}
        self._recorded: dict[tuple[str, int], StepRecord] = {}
        self._consumed: set[tuple[str, int]] = set()
        if ctx.recorded is not None:
            for record in load_steps(ctx.section("steps"), ctx.shown, self.store):
                self._recorded[(record.name, record.ordinal)] = record
        hook = getattr(ctx.hook, "pytest_replay_similarity", None)
        self._similarity: Callable[[str, str], float | None] | None = (
            (lambda a, b: hook(a=a, b=b)) if hook is not None else None
        )

    # -- public API ---------------------------------------------------------------------

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        strategy: str | None = None,
        tolerance: Any = None,
        policy: Any = None,
        match: str | None = None,
        retries: int = 0,
        **kwargs: Any,
    ) -> Any:
        """Run (or replay) ``fn(*args, **kwargs)`` as the step ``name``; see docs/steps.md."""
        __tracebackhide__ = True
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"replay.step({name!r}, ...) got a coroutine function; "
                f"use: await replay.astep({name!r}, fn, ...)"
            )
        options = self._options(strategy, tolerance, policy, match, retries)
        run = self._begin(name, args, kwargs, options)
        return self._execute(run, fn, args, kwargs)

    async def astep(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        strategy: str | None = None,
        tolerance: Any = None,
        policy: Any = None,
        match: str | None = None,
        retries: int = 0,
        **kwargs: Any,
    ) -> Any:
        """``step`` for a coroutine function: awaited only when the step runs."""
        __tracebackhide__ = True
        options = self._options(strategy, tolerance, policy, match, retries)
        run = self._begin(name, args, kwargs, options)
        return await self._aexecute(run, fn, args, kwargs)

    def step_batch(
        self,
        name: str,
        fn: Callable[..., Any],
        items: Iterable[Any],
        concurrency: int = 8,
        *,
        strategy: str | None = None,
        tolerance: Any = None,
        policy: Any = None,
        match: str | None = None,
        retries: int = 0,
        return_exceptions: bool = False,
    ) -> BatchResult:
        """``fn(item)`` for every item as steps ``name`` (ordinal = item index), concurrently.

        Threads run a plain function, an event loop runs a coroutine function.
        Returns ``BatchResult(results, stats)``, results in input order.
        """
        __tracebackhide__ = True
        if inspect.iscoroutinefunction(fn):
            batch = self.astep_batch(
                name,
                fn,
                items,
                concurrency,
                strategy=strategy,
                tolerance=tolerance,
                policy=policy,
                match=match,
                retries=retries,
                return_exceptions=return_exceptions,
            )
            return _run_coroutine(batch)
        items = list(items)
        _check_concurrency(concurrency)
        options = self._options(strategy, tolerance, policy, match, retries)
        slots = self._reserve(name, len(items))
        lanes = self._lanes(name, slots)
        outcomes: list[_Outcome] = [_Outcome(None)] * len(items)

        def one(i: int) -> None:
            with fact_lane(lanes[i]):
                outcomes[i] = self._batch_item(name, fn, items[i], options, slots[i])

        # Each item runs in a copy of this context, so a batch inside a step
        # still belongs to it, and items never see each other's scopes.
        contexts = [contextvars.copy_context() for _ in items]
        if items:
            with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
                futures = [pool.submit(contexts[i].run, one, i) for i in range(len(items))]
                for future in futures:
                    future.result()
        return self._batch_result(name, outcomes, return_exceptions)

    async def astep_batch(
        self,
        name: str,
        fn: Callable[..., Any],
        items: Iterable[Any],
        concurrency: int = 8,
        *,
        strategy: str | None = None,
        tolerance: Any = None,
        policy: Any = None,
        match: str | None = None,
        retries: int = 0,
        return_exceptions: bool = False,
    ) -> BatchResult:
        """step_batch on the running event loop, at most ``concurrency`` items at a time."""
        __tracebackhide__ = True
        items = list(items)
        _check_concurrency(concurrency)
        options = self._options(strategy, tolerance, policy, match, retries)
        slots = self._reserve(name, len(items))
        lanes = self._lanes(name, slots)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> _Outcome:
            # gather() runs each item in its own task (its own context copy).
            async with gate:
                with fact_lane(lanes[i]):
                    run = None
                    try:
                        run = self._begin(name, (items[i],), {}, options, slots[i])
                        value = await self._aexecute(run, fn, (items[i],), {})
                    except Exception as exc:
                        return _Outcome(run, error=exc)
                    return _Outcome(run, value)

        outcomes = await asyncio.gather(*(one(i) for i in range(len(items))))
        return self._batch_result(name, list(outcomes), return_exceptions)

    # -- one step -----------------------------------------------------------------------

    def _options(
        self, strategy: Any, tolerance: Any, policy: Any, match: Any, retries: Any
    ) -> _Options:
        __tracebackhide__ = True
        settings = self.ctx.settings
        strategy = strategy if strategy is not None else settings.get("strategy", "live")
        match = match if match is not None else settings.get("match", "strict")
        tolerance = tolerance if tolerance is not None else settings.get("tolerance")
        policy = policy if policy is not None else settings.get("policy")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if match not in MATCHES:
            raise ValueError(f"match={match!r}; expected one of {', '.join(MATCHES)}")
        if not is_count(retries):
            raise ValueError(f"retries={retries!r}; expected an integer >= 0")
        if tolerance is not None:
            from .compare.drift import Drift

            tolerance = Drift.coerce(tolerance)  # a bad tolerance fails when written, not later
        if policy is not None and not hasattr(policy, "check"):
            raise TypeError(f"policy={policy!r}; expected a replay.Policy(...)")
        return _Options(strategy, match, tolerance, policy, retries)

    def _reserve(self, name: str, n: int) -> list[tuple[int, int]]:
        """(ordinal, position) for ``n`` calls of ``name``, in call order."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"step name must be a non-empty str, got {name!r}")
        with self._lock:
            first = self._ordinals.get(name, 0)
            self._ordinals[name] = first + n
            return [(first + i, self.tools.next_position()) for i in range(n)]

    def _begin(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: _Options,
        slot: tuple[int, int] | None = None,
    ) -> _Run:
        __tracebackhide__ = True
        ordinal, position = slot if slot is not None else self._reserve(name, 1)[0]
        run = _Run(name, ordinal, position, options, Inputs.of(args, kwargs))
        parent = _children.get()
        if parent is not None:
            parent.append(run.key)
        if self._checks:
            record = self._recorded.get((name, ordinal))
            if record is None:
                raise self.ctx.error(self._missing(run))
            with self._lock:
                self._consumed.add((name, ordinal))
            run.recorded = record
        return run

    def _execute(self, run: _Run, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        __tracebackhide__ = True
        if run.recorded is not None and run.options.strategy == "mocked" and self._mock:
            return self._mocked(run)
        while True:
            attempt = self._attempt(run)
            try:
                with attempt:
                    value = fn(*args, **kwargs)
            except ReplayError:
                raise
            except Exception as exc:
                if self._failed(run, attempt, exc):
                    continue
                raise
            if inspect.iscoroutine(value):
                value.close()
                raise TypeError(
                    f"replay.step({run.name!r}, ...) got a coroutine; "
                    f"use: await replay.astep({run.name!r}, fn, ...)"
                )
            return self._succeeded(run, attempt, value)

    async def _aexecute(self, run: _Run, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        __tracebackhide__ = True
        if run.recorded is not None and run.options.strategy == "mocked" and self._mock:
            return self._mocked(run)
        while True:
            attempt = self._attempt(run)
            try:
                with attempt:
                    value = fn(*args, **kwargs)
                    if inspect.isawaitable(value):  # a plain function is accepted too
                        value = await value
            except ReplayError:
                raise
            except Exception as exc:
                if self._failed(run, attempt, exc):
                    continue
                raise
            return self._succeeded(run, attempt, value)

    def _attempt(self, run: _Run) -> _Attempt:
        number = len(run.attempts) + 1
        served = None
        if self._serve:
            recorded = run.recorded.attempts if run.recorded is not None else []
            served = recorded[number - 1].tool_events if number <= len(recorded) else []
        return _Attempt(run, number, served)

    def _succeeded(self, run: _Run, attempt: _Attempt, value: Any) -> Any:
        __tracebackhide__ = True
        snapshot = None
        if not self._off:
            try:
                snapshot = jsonable(value)
            except NotCanonical as exc:
                raise self.ctx.error(_not_recordable(run, value, exc)) from None
        done = attempt.record("succeeded", output=snapshot)
        run.attempts.append(done)
        self._done(run)
        if self._checks:
            self._check_output(run, done)
        return value

    def _failed(self, run: _Run, attempt: _Attempt, exc: Exception) -> bool:
        """Keep the failed attempt; True to retry. The last one is checked, then re-raised."""
        __tracebackhide__ = True
        attempt.scope.failed = True
        run.attempts.append(attempt.record("failed", error=error_snapshot(exc)))
        if len(run.attempts) <= run.options.retries:
            return True
        self._done(run)
        if self._checks:
            self._check_failure(run, exc)
        self._note(run, exc)
        return False

    def _done(self, run: _Run) -> None:
        run.duration_ms = (time.perf_counter() - run.started) * 1000.0
        if self._records:
            record = StepRecord(
                run.name, run.ordinal, run.inputs.digest, run.inputs.stored, run.attempts
            )
            data = record.to_yaml(self.store)
            with self._lock:
                self._new[run.position] = data

    # -- replay checks ------------------------------------------------------------------

    def _mocked(self, run: _Run) -> Any:
        """The recorded output, without running the step, once the inputs are the recorded ones."""
        __tracebackhide__ = True
        record = run.recorded
        assert record is not None
        if record.input_digest != run.inputs.digest:
            raise self.ctx.error(self._input_diff(run, record))
        pair = select_attempt_pair(record.attempts)
        if pair is None:
            last = record.attempts[-1] if record.attempts else None
            raise self.ctx.error(
                MissingStep(
                    f"step {run.label} missing output snapshots; cannot run mocked replay",
                    place=f"step {run.label}",
                    recorded=f"{len(record.attempts)} attempt(s), none with an output"
                    + (f"; last error {_error_text(last.error)}" if last and last.error else ""),
                    current="strategy='mocked' needs a recorded output",
                    fix="replay this step live (strategy='live'), or re-record it once it "
                    "succeeds: pytest --replay=record {test}",
                )
            )
        baseline, latest = pair
        # The reference executor's mocked check: the recording's first and last
        # outputs must agree (they differ only when a retry changed the output).
        comparison = self._compare(run, baseline, latest)
        if not comparison:
            raise self._error(comparison)
        self._adopt(record, run.position)
        run.exact = True
        run.duration_ms = (time.perf_counter() - run.started) * 1000.0
        return copy_json(baseline.output)

    def _adopt(self, record: StepRecord, position: int) -> None:
        """Account for what a step that is not run took: facts, tool effects, inner steps."""
        for attempt in record.attempts:
            for key, count in attempt.facts.items():
                self.facts.skip(key, count)
            scope = Scope(
                record.key,
                attempt.attempt,
                position,
                failed=not attempt.has_snapshot,
                shown=record.label,
            )
            self.tools.adopt(scope, attempt.tool_events)
            for child in attempt.steps:
                name, _, ordinal_text = child.rpartition("#")
                ordinal = int(ordinal_text) if ordinal_text.isdigit() else -1
                with self._lock:
                    # Later calls of that name must not take the inner step's ordinal.
                    self._ordinals[name] = max(self._ordinals.get(name, 0), ordinal + 1)
                    inner = self._recorded.get((name, ordinal))
                    fresh = inner is not None and (name, ordinal) not in self._consumed
                    self._consumed.add((name, ordinal))
                if fresh and inner is not None:
                    self._adopt(inner, position)

    def _check_output(self, run: _Run, current: Attempt) -> None:
        __tracebackhide__ = True
        record = run.recorded
        assert record is not None
        pair = select_attempt_pair(record.attempts)
        if pair is None:
            last = record.attempts[-1] if record.attempts else None
            raise self.ctx.error(
                self._with_plan(
                    DriftExceeded(
                        f"step {run.label} returned an output, but its recording has none",
                        place=f"step {run.label}",
                        recorded=_error_text(last.error) if last and last.error else "no attempts",
                        current=current.output,
                        fix="the step succeeds now where it failed when recorded; if that is "
                        "intended, re-record: pytest --replay=record {test}",
                    )
                )
            )
        baseline = pair[0]
        comparison = self._compare(run, baseline, current)
        if not comparison:
            raise self._error(comparison)
        from .compare.drift import plain, same

        run.exact = same(plain(baseline.output), plain(current.output))

    def _check_failure(self, run: _Run, exc: Exception) -> None:
        """The step raised (after its retries): the recording must have failed the same way."""
        __tracebackhide__ = True
        record = run.recorded
        assert record is not None
        current = run.attempts[-1]
        assert current.error is not None
        pair = select_attempt_pair(record.attempts)
        if pair is not None:
            raise self.ctx.error(
                self._with_plan(
                    DriftExceeded(
                        f"step {run.label} raised {_error_text(current.error)}, "
                        "but its recording returned an output",
                        place=f"step {run.label} attempt {current.attempt}",
                        recorded=pair[0].output,
                        current=_error_text(current.error),
                        fix="the step fails now where it succeeded when recorded: fix the "
                        "error above, or re-record if it is expected: "
                        "pytest --replay=record {test}",
                    )
                )
            ) from exc
        last = record.attempts[-1] if record.attempts else None
        if last is None or last.error is None or last.error["type"] != current.error["type"]:
            raise self.ctx.error(
                self._with_plan(
                    DriftExceeded(
                        f"step {run.label} failed differently than recorded",
                        place=f"step {run.label} attempt {current.attempt}",
                        recorded=_error_text(last.error) if last and last.error else "no attempts",
                        current=_error_text(current.error),
                        fix="if the new failure is expected, re-record: "
                        "pytest --replay=record {test}",
                    )
                )
            ) from exc
        from .compare import compare_tool_events

        comparison = compare_tool_events(last.tool_events, current.tool_events, step=run.label)
        if not comparison:
            raise self._error(comparison) from exc

    def _compare(self, run: _Run, recorded: Attempt, current: Attempt) -> Any:
        from .compare import compare_step

        options = run.options
        return compare_step(
            recorded.output,
            current.output,
            step=run.label,
            tolerance=options.tolerance,
            policy=options.policy,
            match=options.match,  # type: ignore[arg-type]
            recorded_tool_events=recorded.tool_events,
            current_tool_events=current.tool_events,
            similarity=self._similarity if options.policy is not None else None,
        )

    def _error(self, comparison: Any) -> ReplayError:
        """A failed Comparison as its error type, persisted; the summary names kind and digest."""
        err = _ERRORS[comparison.kind](
            comparison.summary, fix=_FIXES[comparison.kind], **comparison.error_fields()
        )
        self.ctx.error(self._with_plan(err))
        # The digest names the persisted payload, so it is known only now.
        err.summary = f"{err.summary} (kind={err.kind}, diff_blake3={err.diff_digest})"
        return err

    def _with_plan(self, err: ReplayError) -> ReplayError:
        """A replay failure after a partial failure also shows what an operator faces."""
        if self.tools.effect_count:
            plan = self.tools.resume_plan()
            if plan.needs_operator:
                err.details.append(plan.describe())
        return err

    def _note(self, run: _Run, exc: BaseException) -> None:
        """The resume plan under a step's own failure (once, at the innermost step)."""
        if not self.tools.effect_count or getattr(exc, "_pytest_replay_noted", False):
            return
        add_note = getattr(exc, "add_note", None)
        if add_note is None:  # Python 3.10 has no exception notes
            return
        add_note(
            f"pytest_replay: step {run.label} failed after {len(run.attempts)} attempt(s); "
            + self.tools.resume_plan().describe()
        )
        with contextlib.suppress(AttributeError):
            exc._pytest_replay_noted = True  # type: ignore[attr-defined]

    def _missing(self, run: _Run) -> MissingStep:
        same_name = sum(1 for name, _ in self._recorded if name == run.name)
        details = []
        if not same_name:  # a renamed step: point at what the recording calls it
            names = sorted({name for name, _ in self._recorded})
            nearest = difflib.get_close_matches(run.name, names, n=3, cutoff=0.5)
            details = [
                f"recorded steps: {', '.join(map(repr, names)) or '(none)'}",
                f"nearest recorded names: {', '.join(map(repr, nearest)) or '(none)'}",
            ]
        return MissingStep(
            f"step {run.label} was not recorded",
            place=f"step {run.name!r} ordinal {run.ordinal}",
            recorded=f"{same_name} call(s) of step {run.name!r}",
            current=f"call #{run.ordinal + 1} of step {run.name!r}",
            details=details,
            fix=rerecord_fix(),
        )

    def _input_diff(self, run: _Run, record: StepRecord) -> InputDiff:
        old = arg_paths(record.inputs) if isinstance(record.inputs, dict) else {}
        new = arg_paths(run.inputs.stored)
        names = differing_args(old, new) or ["(the arguments as a whole)"]
        first = names[0]
        return InputDiff(
            f"inputs of step {run.label} changed since the recording: {', '.join(names)}",
            place=f"step {run.label}: {first}",
            recorded=old.get(first, record.input_digest),
            current=new.get(first, run.inputs.digest),
            details=[
                f"differing argument(s): {', '.join(names)}",
                *input_changes(old, new, names),
            ],
            payload={
                "step": run.label,
                "arguments": names,
                "recorded_digest": record.input_digest,
                "current_digest": run.inputs.digest,
            },
            fix="a mocked step returns the output recorded for the recorded inputs; if the "
            "new inputs are right, re-record: pytest --replay=record {test}",
        )

    # -- batches ------------------------------------------------------------------------

    def _lanes(self, name: str, slots: list[tuple[int, int]]) -> list[Any]:
        """Each batch item's facts in a lane of their own (see facts.lane)."""
        return self.facts.batch_lanes([f"{name}#{ordinal}" for ordinal, _ in slots])

    def _batch_item(
        self, name: str, fn: Callable[..., Any], item: Any, options: _Options, slot: Any
    ) -> _Outcome:
        run = None
        try:
            run = self._begin(name, (item,), {}, options, slot)
            return _Outcome(run, self._execute(run, fn, (item,), {}))
        except Exception as exc:
            return _Outcome(run, error=exc)

    def _batch_result(
        self, name: str, outcomes: list[_Outcome], return_exceptions: bool
    ) -> BatchResult:
        __tracebackhide__ = True
        good = [o for o in outcomes if o.ok and o.run is not None]
        total_ms = sum(o.run.duration_ms for o in good if o.run is not None)
        stats = ReplayStats(
            total=len(outcomes),
            successful=len(good),
            failed=len(outcomes) - len(good),
            exact_matches=sum(1 for o in good if o.run is not None and o.run.exact is True),
            mismatches=sum(1 for o in good if o.run is not None and o.run.exact is False),
            total_ms=total_ms,
            average_ms=total_ms / len(good) if good else 0.0,
        )
        errors = [o.error for o in outcomes if o.error is not None]
        replay_errors = [e for e in errors if isinstance(e, ReplayError)]
        # A replay failure always fails the batch; the function's own errors only
        # when the caller did not ask to get them back as results.
        first = replay_errors[0] if replay_errors else None
        if first is None and errors and not return_exceptions:
            first = errors[0]
        if isinstance(first, ReplayError):
            first.details.append(f"step_batch {name!r}: {stats.describe()}")
            raise first
        if first is not None:
            if hasattr(first, "add_note"):
                first.add_note(f"pytest_replay: step_batch {name!r}: {stats.describe()}")
            raise first
        return BatchResult([o.value if o.ok else o.error for o in outcomes], stats)

    # -- Recorder protocol --------------------------------------------------------------

    def to_yaml(self) -> dict[str, Any]:
        if not self._records or not self._new:
            return {}
        return {"steps": [self._new[p] for p in sorted(self._new)]}

    def unused(self) -> list[str]:
        if not self._checks:
            return []
        return [
            f"step {name!r}#{ordinal}"
            for name, ordinal in self._recorded
            if (name, ordinal) not in self._consumed
        ]

    @property
    def new_count(self) -> int:
        return 0  # a replay never appends steps: an unrecorded step fails

    def save_files(self) -> None:
        """Nothing beside the cassette: large values go to the blob store."""

    def finish(self) -> None:
        """Tool-event parity of the test body (tool calls made outside any step)."""
        if not self._checks:
            return
        recorded = self.tools.recorded_test_events or []
        current = self.tools.test_scope.events
        if not recorded and not current:
            return
        from .compare import compare_tool_events

        comparison = compare_tool_events(recorded, current, step=TEST_BODY)
        if not comparison:
            raise self._error(comparison)


def _check_concurrency(concurrency: Any) -> None:
    if not is_count(concurrency) or concurrency < 1:
        raise ValueError(f"concurrency={concurrency!r}; expected an integer >= 1")


def _run_coroutine(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even under a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A loop runs in this thread (an async test): run ours in a worker thread.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()


def _error_text(error: Mapping[str, Any] | None) -> str:
    if not error:
        return "(no error recorded)"
    return f"{error.get('type')}: {error.get('message')}"


def _not_recordable(run: _Run, value: Any, exc: Exception) -> StepNotRecordable:
    hint = ""
    if "Redacted" in str(exc):
        hint = (
            "; it holds a Redacted placeholder from a metadata_only tool: use "
            "redaction='full' for tools whose output the step returns"
        )
    return StepNotRecordable(
        f"the output of step {run.label} cannot be stored: {exc}{hint}",
        place=f"step {run.label}",
        current=f"{type(value).__name__}: {value!r}"[:200],
        fix="return JSON-able data from the step function (dict with str keys, list, str, "
        "number, bool, None)",
    )


def install(session: Any) -> StepRecorder:
    tools = next(r for r in session.recorders if isinstance(r, ToolRecorder))
    recorder = StepRecorder(session.context, session.facts, tools)
    session.step = recorder.step
    session.astep = recorder.astep
    session.step_batch = recorder.step_batch
    session.astep_batch = recorder.astep_batch
    session.Drift = _LazyClass("pytest_replay.compare.drift", "Drift")
    session.Policy = _LazyClass("pytest_replay.compare.policy", "Policy")
    return recorder
