"""replay.ring: the cassette's rings section, .vrrl sidecars, and the stream diff at test end."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from ..cassette import is_count, sanitize_component
from ..context import RecorderContext
from ..errors import (
    CassetteError,
    ConfigError,
    RingDiff,
    RingLogError,
    RingLogMismatch,
    rerecord_fix,
    restore_fix,
)
from ..modes import Mode
from .log import MAX_RECORDS, check_log, read_records
from .recorder import RingRecorder, diff_streams, stream_digest

# 255 bytes, less '.vrrl' and the '.<pid>.<hex>.tmp' suffix of an atomic write.
_SIDECAR_NAME_BYTES = 200


def sidecar_path(cassette: Path, ring_name: str) -> Path:
    """``<cassette stem>.<ring name>.vrrl`` next to the cassette.

    The ring part is shortened (with a digest) so the whole name, plus the
    temporary suffix used while writing, stays under the 255-byte limit.
    """
    budget = max(_SIDECAR_NAME_BYTES - len(cassette.stem.encode("utf-8")), 24)
    return cassette.with_name(f"{cassette.stem}.{sanitize_component(ring_name, budget)}.vrrl")


def is_sidecar_name(log: Any) -> bool:
    """A ring log named in a cassette must sit next to it: no directories, no '..'."""
    return (
        isinstance(log, str)
        and log not in ("", ".", "..")
        and "/" not in log
        and "\\" not in log
        and "\0" not in log
    )


_DIGEST_HEX = 64  # stream_digest: blake3's 32 bytes as hex


def rings_section_problem(section: Any) -> tuple[str, str] | None:
    """What is wrong with a cassette's 'rings' section, as (summary, place); None when valid.

    Every entry needs all four keys the recorder writes, each of the right
    kind, so a hand edit or a bad merge is caught before the test runs.
    """
    if not isinstance(section, dict):
        return ("section 'rings' must map ring names to {log, records, capacity, digest}", "rings")
    for name, entry in section.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            return (
                "section 'rings' must map ring names to {log, records, capacity, digest}",
                f"rings.{name}",
            )
        log, digest = entry.get("log"), entry.get("digest")
        checks = (
            ("log", is_sidecar_name(log), "a file name next to the cassette"),
            ("records", is_count(entry.get("records")), "a record count (an integer >= 0)"),
            (
                "capacity",
                is_count(entry.get("capacity")) and 0 < entry["capacity"] <= MAX_RECORDS,
                f"the ring's capacity (an integer from 1 to {MAX_RECORDS})",
            ),
            (
                "digest",
                isinstance(digest, str)
                and len(digest) == _DIGEST_HEX
                and all(c in "0123456789abcdef" for c in digest),
                f"the stream's digest ({_DIGEST_HEX} lowercase hex digits)",
            ),
        )
        for key, ok, what in checks:
            if not ok:
                found = repr(entry[key]) if key in entry else "missing"
                summary = f"ring {name!r}: '{key}' must be {what}, got {found}"
                return summary, f"rings.{name}.{key}"
    return None


class RingSet:
    """The rings a test opened, recorded to sidecars or diffed against them."""

    def __init__(self, ctx: RecorderContext) -> None:
        self.ctx = ctx
        self.rings: dict[str, RingRecorder] = {}
        recorded = ctx.section("rings", {})
        problem = rings_section_problem(recorded)
        if problem is not None:
            summary, place = problem
            raise CassetteError(summary, cassette=ctx.shown, place=place, fix=restore_fix())
        self.recorded: dict[str, dict[str, Any]] = recorded
        if ctx.mode.checks_outputs:
            # At setup, so a missing, cut or appended-to log errors the test
            # before its body runs: header and exact size only (no records
            # read). Each record's magic word is checked when finish reads it.
            # The record count is in the header too, so a log from another
            # recording (a bad merge) is caught here when the counts differ.
            for name, entry in recorded.items():
                path, shown = self._log(entry)
                try:
                    capacity = check_log(path, shown=shown)
                except RingLogError as err:
                    raise _in_test(err, shown) from None
                count = entry["records"]
                if capacity != max(count, 1):
                    raise _mismatch(name, shown, f"{count} records", f"{capacity} record slots")

    def ring(self, name: str, capacity: int, xp: ModuleType | str | None = None) -> RingRecorder:
        """A ring whose slot table lives on the device (CuPy when it sees one, else NumPy)."""
        __tracebackhide__ = True
        if name in self.rings:
            raise self.ctx.error(
                ConfigError(
                    f"ring {name!r} was already opened in this test",
                    fix="give each ring of a test its own name",
                )
            )
        ring = RingRecorder(name, capacity, xp)
        self.rings[name] = ring
        return ring

    # -- Recorder protocol --------------------------------------------------------

    def finish(self) -> None:
        """Replay modes: diff every ring's stream against its recording, record by record."""
        __tracebackhide__ = True
        for ring in self.rings.values():
            ring.drain()
        if not self.ctx.mode.checks_outputs:
            return
        for name, ring in self.rings.items():
            entry = self.recorded.get(name)
            if entry is None:
                raise self.ctx.error(
                    RingDiff(
                        f"ring {name!r} was not recorded",
                        place=f"ring {name!r}",
                        recorded=f"rings: {sorted(self.recorded) or 'none'}",
                        current=f"{ring.published} publish(es)",
                        fix=rerecord_fix(),
                    )
                )
            path, shown = self._log(entry)
            try:
                recorded = read_records(path, shown=shown)
            except RingLogError as err:
                raise self.ctx.error(_in_test(err, shown)) from None
            result = diff_streams(recorded, ring.stream(), name)
            if not result:
                # Hashing a large log is not free, so only now: a log that does
                # not match its own cassette entry is a bad merge, not a change.
                digest = entry["digest"]
                in_log = stream_digest(recorded)
                if in_log != digest:
                    raise self.ctx.error(
                        _mismatch(
                            name,
                            shown,
                            f"digest {digest[:16]}",
                            f"digest {in_log[:16]}",
                            f"the test's stream differs from the log too: {result.summary}",
                        )
                    )
                fields = result.error_fields()
                context = [f"recorded log: {shown}"]
                if entry["capacity"] != ring.capacity:
                    # slot_idx and epoch follow from the capacity: say why they moved.
                    context.append(
                        f"ring capacity: recorded {entry['capacity']}, now {ring.capacity}"
                    )
                fields["details"] = [*context, *fields["details"]]
                raise self.ctx.error(
                    RingDiff(
                        result.summary,
                        fix="if the new stream is right, re-record: pytest --replay=record {test}",
                        **fields,
                    )
                )

    def _log(self, entry: dict[str, Any]) -> tuple[Path, str]:
        """A recorded ring's log: its path, and its name in messages (like the cassette's)."""
        return (
            self.ctx.cassette_path.parent / entry["log"],
            Path(self.ctx.shown).with_name(entry["log"]).as_posix(),
        )

    def save_files(self) -> None:
        """Write each ring's .vrrl (left untouched when only timestamps changed)."""
        if self.ctx.mode is not Mode.RECORD:
            return
        for name, ring in self.rings.items():
            path = sidecar_path(self.ctx.cassette_path, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            ring.write_log(path)

    def to_yaml(self) -> dict[str, Any]:
        if not self.ctx.mode.records or not self.rings:
            return {}
        return {"rings": {name: self._entry(name, ring) for name, ring in self.rings.items()}}

    def _entry(self, name: str, ring: RingRecorder) -> dict[str, Any]:
        stream = ring.stream()  # a copy of every record: taken once
        return {
            "log": sidecar_path(self.ctx.cassette_path, name).name,
            "records": len(stream),
            "capacity": ring.capacity,
            "digest": stream_digest(stream),
        }

    def unused(self) -> list[str]:
        return [f"ring {name!r}" for name in self.recorded if name not in self.rings]

    @property
    def new_count(self) -> int:
        return 0


def install(session: Any) -> RingSet:
    rings = RingSet(session.context)
    session.ring = rings.ring
    return rings


def _mismatch(name: str, shown: str, recorded: str, current: str, *details: str) -> RingLogError:
    """A log that another recording wrote: the cassette says one thing, the file another."""
    return RingLogMismatch(
        f"ring log of ring {name!r} is not the one this cassette was recorded with "
        "(a merge or checkout took one file without the other?)",
        place=shown,
        recorded=f"cassette 'rings' entry: {recorded}",
        current=f"log file: {current}",
        details=details,
        fix=f"restore the cassette and {shown} from the same commit, or re-record: "
        "pytest --replay=record {test}",
    )


def _in_test(err: RingLogError, shown: str) -> RingLogError:
    """A damaged or missing log of a recorded test: the Fix a test run can give."""
    err.fix = f"restore {shown} from version control, or re-record: pytest --replay=record {{test}}"
    return err
