"""pluggy hook specifications: the extension points of pytest_replay.

Implement any of these in a ``conftest.py`` or a plugin; pytest registers
them automatically. Each is called with keyword arguments.
"""

from __future__ import annotations

from pathlib import Path

import pytest

hookspec = pytest.hookspec


@hookspec(firstresult=True)
def pytest_replay_cassette_path(item: pytest.Item, default: Path) -> Path | None:
    """Return a different cassette path for ``item``, or None to keep ``default``.

    The returned path is used as is (not sanitised); keep it inside the
    repository so the cassette is committed with the test.
    """
