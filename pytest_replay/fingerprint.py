"""Environment fingerprint: what a cassette was recorded with, and whether replay differs much."""

from __future__ import annotations

import contextlib
import platform
import sys
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from typing import Any

FINGERPRINT_KEY = "env"  # top-level cassette key, written after the header

# Distribution names whose version goes in the fingerprint (cupy only if imported).
_PACKAGES = (("numpy", "numpy"), ("vcrpy", "vcrpy"))
# The version parts that make a "major" environment change, per field.
_MAJOR_PARTS = {"python": 2, "platform": None}  # None: the whole string


@lru_cache(maxsize=1)
def _static() -> tuple[tuple[str, str], ...]:
    from . import __version__

    fields = {
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "pytest_replay": __version__,
    }
    for field, dist in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            fields[field] = metadata.version(dist)
    return tuple(sorted(fields.items()))


def current() -> dict[str, str]:
    """This process's fingerprint; ``cupy`` only once something imported it.

    Cheap after the first call: versions come from installed metadata, not imports.
    """
    fields = dict(_static())
    cupy = sys.modules.get("cupy")
    version = getattr(cupy, "__version__", None)
    if isinstance(version, str):
        fields["cupy"] = version
    return fields


def _major(field: str, version: str) -> str:
    parts = _MAJOR_PARTS.get(field, 1)
    if parts is None:
        return version
    return ".".join(version.split(".")[:parts])


def differences(recorded: Any, now: Mapping[str, str]) -> list[str]:
    """Fields whose major version differs, as ``numpy 2.1.0 recorded, 1.26.4 now``.

    Major means: Python major.minor, the platform (system-machine) as a
    whole, the first version number of each package.

    Only fields present on both sides are compared (a cassette from before
    fingerprints, or cupy imported on one side only, says nothing); a
    malformed fingerprint is ignored: it is information, never a failure.
    """
    if not isinstance(recorded, Mapping):
        return []
    out = []
    for field in sorted(now):
        old = recorded.get(field)
        if not isinstance(old, str):
            continue
        if _major(field, old) != _major(field, now[field]):
            out.append(f"{field} {old} recorded, {now[field]} now")
    return out
