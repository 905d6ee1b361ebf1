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


@hookspec(firstresult=True)
def pytest_replay_similarity(a: str, b: str) -> float | None:
    """Similarity of two texts in 0..1, for ``Policy(...).similar(path, threshold)`` rules.

    ``a`` is the recorded text, ``b`` the current one. Return None to leave the
    pair to the next implementation, and finally to the built-in deterministic
    token similarity. Plug embeddings here, e.g. in a ``conftest.py``::

        def pytest_replay_similarity(a, b):
            return cosine(embed(a), embed(b))

    Called only for steps that have a policy with a ``similar`` rule; a value
    outside 0..1 fails the step.
    """


@hookspec
def pytest_replay_redact(kind: str, item: dict) -> None:
    """Remove secrets from ``item`` before it is stored; mutate it in place.

    ``kind`` says what ``item`` is:

    - ``"http_request"``: ``{"method", "uri", "headers", "body"}``; called when
      recording *and* on replay, before the request is matched, so a redacted
      value still matches. Keep it deterministic.
    - ``"http_response"``: ``{"status", "reason", "headers", "body"}``; called
      when recording.

    ``headers`` maps names to lists of values, ``body`` is bytes. The
    built-in redaction (see docs/http.md) has already run. Example::

        def pytest_replay_redact(kind, item):
            if kind == "http_request":
                item["headers"].pop("X-Tenant-Secret", None)
    """
