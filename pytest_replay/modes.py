"""What each replay mode allows, and how the run-wide mode is chosen."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from .errors import ConfigError

ENV_VAR = "PYTEST_REPLAY_MODE"


class Mode(str, enum.Enum):
    OFF = "off"
    RECORD = "record"
    REPLAY = "replay"
    STRICT = "strict"
    VERIFY = "verify"

    # The DESIGN modes table, one property per column.
    @property
    def live_io(self) -> bool:
        """IO facts call the real function (nothing served from a cassette)."""
        return self in (Mode.OFF, Mode.RECORD, Mode.VERIFY)

    @property
    def records(self) -> bool:
        """What the test takes in and puts out is written to the cassette."""
        return self is Mode.RECORD

    @property
    def checks_outputs(self) -> bool:
        return self in (Mode.REPLAY, Mode.STRICT, Mode.VERIFY)

    @property
    def may_write(self) -> bool:
        """May write a cassette at all (record always; replay only new ones)."""
        return self in (Mode.RECORD, Mode.REPLAY)

    @property
    def unused_fails(self) -> bool:
        return self is Mode.STRICT

    @property
    def needs_cassette(self) -> bool:
        """A missing cassette fails the test instead of recording it."""
        return self in (Mode.STRICT, Mode.VERIFY)

    @property
    def locked(self) -> bool:
        """A run-wide promise (nothing live or nothing written) per-test overrides cannot break."""
        return self in (Mode.STRICT, Mode.VERIFY)


MODES: tuple[str, ...] = tuple(m.value for m in Mode)


def parse_mode(value: str, *, source: str) -> Mode:
    """Turn a user string into a Mode, or a ConfigError listing the valid ones."""
    text = value.strip().lower()
    if text in MODES:
        return Mode(text)
    if not text:
        raise ConfigError(
            f"empty replay mode (from {source}); valid modes: {', '.join(MODES)}",
            fix=f"give a mode, e.g. {source}=strict in CI, or leave {source} out for replay"
            if source.startswith("--")
            else f"set {source} to one of: {', '.join(MODES)}",
        )
    if source.startswith("--"):
        fix = f"use one of: {', '.join('--replay=' + m for m in MODES)}"
    else:
        fix = f"set {source} to one of: {', '.join(MODES)}"
    raise ConfigError(
        f"unknown replay mode {value!r} (from {source}); valid modes: {', '.join(MODES)}",
        fix=fix,
    )


def resolve_mode(flag: str | None, env: Mapping[str, str], ini: str | None) -> Mode:
    """The run-wide mode: the flag wins over the environment, which wins over the ini.

    An empty ``--replay=`` is an error, not the default: ``--replay=$MODE`` with
    the variable unset must not quietly record what strict would refuse. An
    empty environment variable counts as unset, as shells and CI files use it.
    """
    if flag is not None:
        return parse_mode(flag, source="--replay")
    if env.get(ENV_VAR):
        return parse_mode(env[ENV_VAR], source=f"${ENV_VAR}")
    if ini:
        return parse_mode(ini, source="ini option replay_mode")
    return Mode.REPLAY


def effective_mode(run_mode: Mode, override: str | None, *, source: str) -> Mode:
    """A per-test override (marker/replay_config) applies, except under strict and verify.

    Strict is the CI promise "nothing live, nothing written", verify the promise
    "everything live, checked, nothing written": a marker in a test file must
    not be able to break either, so both ignore overrides.
    """
    if override is None or run_mode.locked:
        return run_mode
    return parse_mode(override, source=source)
