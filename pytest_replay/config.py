"""Per-test settings: ini defaults, then the replay_config fixture, then the marker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .ambient import CLOCK_WHAT, valid_clock, valid_switch
from .cassette import is_count
from .errors import ConfigError

DEFAULT_BLOB_THRESHOLD = 4096


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_str_or_none(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def _valid_match_on(v: Any) -> bool:
    from .http.index import valid_match_on

    return valid_match_on(v)


def _short_secrets(v: Any, source: str) -> ConfigError | None:
    from .http.redact import short_values_error

    return short_values_error(v, f"replay setting redact_values in {source}")


def _bad_hosts(v: Any, source: str) -> ConfigError | None:
    from .http.network import allow_hosts_error

    return allow_hosts_error(
        v, f"replay setting allow_hosts in {source}", "allow_hosts=[{!r}]", "db.internal"
    )


# key -> a check of what is inside a value of the right type: its error, or None.
ENTRY_CHECKS: dict[str, Callable[[Any, str], ConfigError | None]] = {
    "redact_values": _short_secrets,
    "allow_hosts": _bad_hosts,
}
# Settings whose values no message repeats (they hold secrets).
SECRET_KEYS = frozenset({"redact_values"})

# key -> (validator, what a valid value is). Features add their keys here.
KNOWN_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "mode": (_is_str_or_none, "a mode name: off, record, replay, strict, verify"),
    "cassette": (_is_str_or_none, "a cassette file name (relative, no '..')"),
    "missing_fact_retryable": (_is_bool, "True or False"),
    "blob_threshold": (is_count, "a byte count >= 0"),
    # step outputs
    "strategy": (lambda v: v in ("live", "mocked"), "'live' or 'mocked'"),
    "match": (lambda v: v in ("strict", "tolerant"), "'strict' or 'tolerant'"),
    "tolerance": (
        lambda v: v is None or isinstance(v, (int, float, dict)) or hasattr(v, "tokens"),
        "a Drift, a dict like {'tokens': 0.05, 'cost': 0.1}, or a number",
    ),
    "policy": (lambda v: v is None or hasattr(v, "check"), "a replay.Policy(...) or None"),
    # ambient determinism (docs/ambient.md)
    "clock": (valid_clock, CLOCK_WHAT),
    "random": (valid_switch, "True or False"),
    "uuid": (valid_switch, "True or False"),
    # HTTP
    "http": (_is_bool, "True or False"),
    "match_on": (
        _valid_match_on,
        "a list of method, scheme, host, port, path, query, uri, body, headers "
        "or functions request -> hashable",
    ),
    "redact": (_is_str_list, "a list of header/field names, e.g. ['X-Session', 'password']"),
    "redact_values": (_is_str_list, "a list of secret strings to scrub anywhere"),
    "volatile_headers": (_is_str_list, "a list of header names, e.g. ['X-Trace']"),
    "allow_hosts": (_is_str_list, "a list of host names or addresses"),
}


@dataclass(frozen=True)
class TestSettings:
    """The merged overrides for one test, validated."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def merge_settings(
    ini: Mapping[str, Any], fixture: Mapping[str, Any] | None, marker: Mapping[str, Any]
) -> TestSettings:
    """Later sources win: ini < replay_config fixture < @pytest.mark.replay(...)."""
    merged: dict[str, Any] = dict(ini)
    for source, values in (("replay_config fixture", fixture or {}), ("replay marker", marker)):
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{source} must be a dict, got {type(values).__name__}",
                fix="return a dict from your replay_config fixture, e.g. {'mode': 'record'}",
            )
        for key, value in values.items():
            check(key, value, source)
            merged[key] = value
    return TestSettings(merged)


def check(key: str, value: Any, source: str) -> None:
    """Reject unknown keys and bad values with the list of what is accepted."""
    if key not in KNOWN_KEYS:
        raise ConfigError(
            f"unknown replay setting {key!r} in {source}",
            details=[f"known settings: {', '.join(sorted(KNOWN_KEYS))}"],
            fix=f"remove {key!r} or correct its spelling",
        )
    valid, what = KNOWN_KEYS[key]
    if not valid(value):
        shown = f" (a {type(value).__name__})" if key in SECRET_KEYS else f"={value!r}"
        raise ConfigError(
            f"replay setting {key}{shown} in {source} is not valid",
            fix=f"{key} must be {what}",
        )
    entries = ENTRY_CHECKS.get(key)
    error = entries(value, source) if entries is not None else None
    if error is not None:
        raise error
