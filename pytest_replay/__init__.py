"""pytest_replay: deterministic record/replay testing for pytest (public names)."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module; imported on first use, so loading the plugin stays cheap
# (the comparison library pulls in deepdiff).
_LAZY = {
    "Drift": "pytest_replay.compare.drift",
    "Policy": "pytest_replay.compare.policy",
    "Redacted": "pytest_replay.tools",
    "ResumePlan": "pytest_replay.tools",
    "ReplayStats": "pytest_replay.steps",
}

__all__ = ["Drift", "Policy", "Redacted", "ReplayStats", "ResumePlan", "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_replay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
