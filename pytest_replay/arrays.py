"""replay.check_array: arrays recorded as .npy blobs, compared on replay on their own device."""

from __future__ import annotations

from typing import Any, BinaryIO

import numpy as np

from .compare.arrays import array_to_npy_bytes, check_arguments, compare_arrays
from .context import RecorderContext
from .errors import ArrayDiff, CassetteError, ConfigError, ReplayError, rerecord_fix, restore_fix
from .modes import Mode

_NPY_MAGIC = b"\x93NUMPY"


class ArrayChecks:
    """The ``arrays:`` section: ``{name, ordinal, blob, shape, dtype}`` per check.

    A name checked several times in one test is a sequence, like fact keys.
    """

    def __init__(self, ctx: RecorderContext) -> None:
        self.ctx = ctx
        self._recorded: dict[str, list[dict[str, Any]]] = {}
        self._used: dict[str, int] = {}
        self._new: list[dict[str, Any]] = []
        entries = ctx.section("arrays", [])
        if not isinstance(entries, list) or not all(_valid_entry(e) for e in entries):
            raise CassetteError(
                "section 'arrays' must be a list of {name, blob, shape, dtype}",
                cassette=ctx.shown,
                fix=restore_fix(),
            )
        for entry in entries:
            self._recorded.setdefault(entry["name"], []).append(entry)
        if ctx.mode.checks_outputs:
            # At setup, as for every other blob: a missing or tampered .npy
            # errors the test before its body runs. check_array reads the blob
            # again then, but does not hash it a second time (BlobStore.verify).
            for entry in entries:
                ctx.blobs.verify(entry["blob"])

    def check_array(
        self,
        name: str,
        array: Any,
        *,
        rtol: float | None = None,
        atol: float | None = None,
        max_mismatch: int = 0,
        ulp: int | None = None,
    ) -> None:
        """Record ``array`` (record mode) or compare it with the recording (replay modes)."""
        __tracebackhide__ = True
        mode = self.ctx.mode
        if mode is Mode.OFF:
            return
        # Checked in every mode: a bad call must fail when it is recorded,
        # not on every replay after it.
        self._check_args(name, array, rtol, atol, max_mismatch, ulp)
        k = self._used.get(name, 0)
        self._used[name] = k + 1
        if mode.records:
            blob = self.ctx.blobs.put(array_to_npy_bytes(array), "npy")
            self._new.append(
                {
                    "name": name,
                    "ordinal": k,
                    "blob": blob,
                    "shape": list(getattr(array, "shape", ())),
                    "dtype": str(getattr(array, "dtype", "")),
                }
            )
            return
        entries = self._recorded.get(name, [])
        if k >= len(entries):
            raise self.ctx.error(
                ArrayDiff(
                    f"array {name!r} check #{k + 1} was not recorded",
                    place=f"array {name!r} ordinal {k}",
                    recorded=f"{len(entries)} check(s) of this name",
                    current=f"check #{k + 1}",
                    fix=rerecord_fix(),
                )
            )
        try:
            # Checked at setup: read straight into the array, not hashed again
            # (a blob changed since then is hashed, and fails, here).
            with self.ctx.blobs.open(entries[k]["blob"]) as fh:
                recorded = load_npy(fh)
        except ReplayError as err:
            raise self.ctx.error(err).with_traceback(None) from None
        except ValueError as exc:
            raise self.ctx.error(
                CassetteError(
                    f"array {name!r} blob is not a valid .npy file: {exc}",
                    place=f"arrays: {name}#{k} blob {entries[k]['blob']}",
                    fix=rerecord_fix(),
                )
            ) from None
        result = compare_arrays(
            name, recorded, array, rtol=rtol, atol=atol, max_mismatch=max_mismatch, ulp=ulp
        )
        if not result:
            raise self.ctx.error(
                ArrayDiff(
                    result.summary,
                    fix="if the new values are right, re-record: pytest --replay=record {test}",
                    **result.error_fields(),
                )
            )

    def _check_args(
        self, name: Any, array: Any, rtol: Any, atol: Any, max_mismatch: Any, ulp: Any
    ) -> None:
        try:
            check_arguments(name, array, rtol=rtol, atol=atol, max_mismatch=max_mismatch, ulp=ulp)
        except (TypeError, ValueError) as exc:
            raise self.ctx.error(
                ConfigError(
                    f"check_array({name!r}) arguments are not valid: {exc}",
                    place=f"check_array({name!r})",
                    fix="see docs/arrays.md for rtol/atol/ulp/max_mismatch",
                )
            ) from None

    # -- Recorder protocol --------------------------------------------------------

    def to_yaml(self) -> dict[str, Any]:
        return {"arrays": self._new} if self._new else {}

    def unused(self) -> list[str]:
        return [
            f"array {name!r}#{k}"
            for name, entries in self._recorded.items()
            for k in range(self._used.get(name, 0), len(entries))
        ]

    @property
    def new_count(self) -> int:
        return 0  # a replay never appends arrays: an unrecorded check fails

    def finish(self) -> None:
        """Array checks happen where the test calls them."""

    def save_files(self) -> None:
        """Everything this kind saves is in the cassette or the blob store."""


def load_npy(fh: BinaryIO) -> np.ndarray:
    """One array from a .npy file, never unpickling; ValueError names what is wrong.

    What npy_bytes_to_array checks, from a file: a real file is read straight
    into the array (numpy's fromfile), with no bytes copy in between.
    """
    start = fh.read(len(_NPY_MAGIC))
    if start != _NPY_MAGIC:
        raise ValueError(f"it does not start with the \\x93NUMPY magic (start: {start!r})")
    fh.seek(0)
    try:
        array = np.lib.format.read_array(fh, allow_pickle=False)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, KeyError) as exc:
        raise ValueError(f"bad .npy data: {exc}") from None
    if fh.read(1):
        raise ValueError("trailing bytes after the array data")
    return array


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and isinstance(entry.get("blob"), str)
    )


def install(session: Any) -> ArrayChecks:
    checks = ArrayChecks(session.context)
    session.check_array = checks.check_array
    return checks
