"""pytest_replay: deterministic record/replay testing for pytest (public names)."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module; imported on first use, so loading the plugin stays cheap
# (the comparison library pulls in deepdiff).
_LAZY = {
    "Cassette": "pytest_replay.cassette",
    "Comparison": "pytest_replay.compare.result",
    "compare_arrays": "pytest_replay.compare.arrays",
    "compare_step": "pytest_replay.compare.steps",
    "FactLog": "pytest_replay.facts",
    "FailureClass": "pytest_replay.ring",
    "FailureEvidence": "pytest_replay.ring",
    "Mode": "pytest_replay.modes",
    "RecordedSlot": "pytest_replay.ring",
    "ReplayError": "pytest_replay.errors",
    "RingLog": "pytest_replay.ring",
    "RingRecorder": "pytest_replay.ring",
    "diff_streams": "pytest_replay.ring",
    "Drift": "pytest_replay.compare.drift",
    "Policy": "pytest_replay.compare.policy",
    "Redacted": "pytest_replay.tools",
    "ResumePlan": "pytest_replay.tools",
    "ReplayStats": "pytest_replay.steps",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_replay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
