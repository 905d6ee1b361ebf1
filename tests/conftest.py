"""Shared helpers for plugin tests: write a test module, run it in a real inner pytest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy  # noqa: F401 - imported once here: pytester's inner runs cannot re-import it
import pytest
import vcr.patch  # noqa: F401 - likewise; it imports every HTTP client library installed

import pytest_replay.http.section  # noqa: F401 - its stubs are built once per process


def tree_digest(root: Path, exclude: tuple[str, ...] = (".pytest_cache", "__pycache__")) -> dict:
    """Path -> sha256 of every file under root (what 'writes nothing' compares)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part in exclude for part in path.parts):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class ReplayTester:
    """pytester plus the few things every replay test does."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.root = pytester.path

    def module(self, source: str, name: str = "test_mod") -> Path:
        return self.pytester.makepyfile(**{name: source})

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:randomly", *args)

    def record(self, *args: str) -> pytest.RunResult:
        return self.run("--replay=record", *args)

    def cassette(self, test: str, module: str = "test_mod") -> Path:
        return self.root / "cassettes" / module / f"{test}.yaml"

    def cassettes(self) -> list[Path]:
        return sorted(self.root.rglob("*.yaml"))


@pytest.fixture
def rt(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> ReplayTester:
    monkeypatch.delenv("PYTEST_REPLAY_MODE", raising=False)
    # pytest prints whole failure messages in its short summary when it sees CI:
    # inner runs print the same on a laptop and in CI.
    for var in ("CI", "BUILD_NUMBER"):
        monkeypatch.delenv(var, raising=False)
    return ReplayTester(pytester)
