"""Error types: every failure pytest_replay raises on purpose, each with a Fix hint."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

_MISSING: Any = object()
_LABEL_WIDTH = 10


def _show(value: Any) -> str:
    """One readable line for a recorded/current value in a message."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 300:
        text = text[:297] + "..."
    return text.replace("\n", "\\n")


class ReplayError(Exception):
    """Base of every error pytest_replay raises on purpose.

    ``kind`` is the failure family named in DESIGN.md (``replay_drift``...),
    ``code`` the stable machine code (seed codes such as ``missing_fact``).
    The message is built from fields so the plugin can add the test id and
    the cassette path after the fact, where the library did not know them.
    """

    kind: ClassVar[str] = "replay_error"
    code: ClassVar[str] = "replay_error"

    def __init__(
        self,
        summary: str,
        *,
        test: str | None = None,
        cassette: str | None = None,
        place: str | None = None,
        recorded: Any = _MISSING,
        current: Any = _MISSING,
        details: Iterable[str] = (),
        fix: str | None = None,
        retryable: bool = False,
        payload: dict[str, Any] | None = None,
    ) -> None:
        self.summary = summary
        self.test = test
        self.cassette = cassette
        self.place = place
        self.recorded = recorded
        self.current = current
        self.details = list(details)
        self.fix = fix
        self.retryable = retryable
        self.payload = payload
        self.diff_digest: str | None = None
        self.diff_path: str | None = None
        super().__init__(summary)

    def with_context(self, *, test: str | None = None, cassette: str | None = None) -> ReplayError:
        """Fill in the test id and cassette path where the raiser did not know them."""
        if self.test is None:
            self.test = test
        if self.cassette is None:
            self.cassette = cassette
        if self.fix is not None and self.test:
            self.fix = self.fix.replace("{test}", _shell_quote(self.test))
        return self

    def diff_payload(self) -> dict[str, Any]:
        """The JSON-able record persisted under .pytest_cache/replay/diffs/."""
        body: dict[str, Any] = {
            "kind": self.kind,
            "code": self.code,
            "summary": self.summary,
            "test": self.test,
            "cassette": self.cassette,
            "place": self.place,
        }
        if self.recorded is not _MISSING:
            body["recorded"] = _jsonable(self.recorded)
        if self.current is not _MISSING:
            body["current"] = _jsonable(self.current)
        if self.details:
            body["details"] = self.details
        if self.payload:
            body.update(self.payload)
        return body

    def render(self) -> str:
        lines = [f"{self.kind}: {self.summary}"]

        def row(label: str, value: str) -> None:
            lines.append(f"  {label + ':':<{_LABEL_WIDTH}} {value}")

        if self.test:
            row("test", self.test)
        if self.cassette:
            row("cassette", self.cassette)
        if self.place:
            row("at", self.place)
        if self.recorded is not _MISSING:
            row("recorded", _show(self.recorded))
        if self.current is not _MISSING:
            row("current", _show(self.current))
        lines.extend(f"  {line}" for line in self.details)
        if self.diff_path:
            row("diff", self.diff_path)
        if self.fix:
            # Outside a test run (the CLI) there is no node id to put in.
            lines.append(f"  Fix: {self.fix.replace('{test}', '<test node id>')}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> Any:
        # Keep errors picklable (xdist ships reports between processes).
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[ReplayError], state: dict[str, Any]) -> ReplayError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("summary", ""))
    err.__dict__.update(state)
    return err


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def quote_test(nodeid: str) -> str:
    """A node id quoted for a shell, the way ``{test}`` in a Fix line is filled in."""
    return _shell_quote(nodeid)


def rerecord_fix(extra: str = "") -> str:
    """The Fix line for 'the recording is stale or incomplete'."""
    return f"re-record this test: pytest --replay=record {{test}}{extra}"


def restore_fix() -> str:
    """The Fix line for 'the cassette file itself is damaged'."""
    return "restore the cassette from version control, or re-record: pytest --replay=record {test}"


# --- configuration and start-up -------------------------------------------------


class ConfigError(ReplayError):
    """A bad mode, option or per-test override."""

    kind = "replay_config"
    code = "config_invalid"


class PluginConflict(ReplayError):
    """Another plugin also claims ``--replay`` (ESSS's pytest-replay)."""

    kind = "replay_conflict"
    code = "plugin_conflict"


# --- cassettes and blobs ----------------------------------------------------------


class CassetteError(ReplayError):
    """A cassette file that cannot be used: corrupt YAML, bad schema, bad blob."""

    kind = "replay_cassette"
    code = "cassette_invalid"


class SchemaVersionError(CassetteError):
    code = "cassette_schema_version"


class BlobError(CassetteError):
    """A blob that is missing or whose bytes do not match its digest."""

    code = "blob_invalid"


class MissingCassette(ReplayError):
    kind = "replay_missing_cassette"
    code = "missing_cassette"


class CassetteWriteError(ReplayError):
    kind = "replay_cassette"
    code = "cassette_write_failed"


# --- IO facts (codes kept from mfm-machine's ReplayIo) ----------------------------


class MissingFactKey(ReplayError):
    kind = "replay_missing_fact"
    code = "missing_fact_key"


class MissingFact(ReplayError):
    kind = "replay_missing_fact"
    code = "missing_fact"


class FactPayloadInvalid(ReplayError):
    kind = "replay_input_diff"
    code = "fact_payload_invalid"


class FactPayloadGetFailed(CassetteError):
    code = "fact_payload_get_failed"


class FactPayloadDecodeFailed(CassetteError):
    code = "fact_payload_decode_failed"


class FactNotRecordable(ReplayError):
    """A live value that cannot be stored (not JSON-able, not bytes, not an array)."""

    kind = "replay_record"
    code = "fact_not_recordable"


class StepNotRecordable(FactNotRecordable):
    """A step output with no JSON form."""

    code = "step_not_recordable"


class ToolNotRecordable(FactNotRecordable):
    """A tool output, tool event payload or step output with no JSON form."""

    code = "tool_not_recordable"


class RecordedToolError(Exception):
    """Raised on replay for a recorded failure whose exception type cannot be rebuilt.

    ``type`` is the recorded ``module.QualName``; steps compare failures by it,
    so a replayed failure still matches its recording.
    """

    def __init__(self, type: str, message: str) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message


class UnusedItems(ReplayError):
    kind = "replay_unused"
    code = "unused"


class ReplayWarning(UserWarning):
    """Something that may make a replay differ from its recording, but is not a failure."""


# --- step outputs -----------------------------------------------------------------


class MissingStep(ReplayError):
    kind = "replay_missing_step"
    code = "missing_step"


class InputDiff(ReplayError):
    kind = "replay_input_diff"
    code = "input_diff"


class DriftExceeded(ReplayError):
    kind = "replay_drift"
    code = "drift"


class AttestationDiff(ReplayError):
    kind = "replay_attestation_diff"
    code = "attestation_diff"


class ToolDiff(ReplayError):
    kind = "replay_tool_diff"
    code = "tool_diff"


class PolicyViolation(ReplayError):
    kind = "replay_policy"
    code = "policy"


# --- HTTP -------------------------------------------------------------------------


class MissingHttp(ReplayError):
    kind = "replay_missing_http"
    code = "missing_http"


class NetworkBlocked(ReplayError):
    kind = "replay_missing_http"
    code = "network_blocked"


# --- rings and arrays -------------------------------------------------------------


class RingDiff(ReplayError):
    kind = "replay_ring_diff"
    code = "ring_diff"


class ArrayDiff(ReplayError):
    kind = "replay_array_diff"
    code = "array_diff"


class RingLogError(ReplayError):
    """A VRRL0001 ring log that cannot be opened or read."""

    kind = "replay_ring_log"
    code = "ring_log"


class CapacityError(RingLogError):
    code = "ring_capacity"


class HeaderMismatch(RingLogError):
    code = "ring_header_mismatch"


class Truncated(RingLogError):
    code = "ring_truncated"


class RingLogMismatch(RingLogError):
    """A ring log from another recording than the cassette entry that names it."""

    code = "ring_log_mismatch"
