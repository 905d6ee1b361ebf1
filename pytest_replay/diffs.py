"""Diff payloads persisted content-addressed under .pytest_cache/replay/diffs/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .blobs import atomic_write
from .canonical import canonical_json, digest


class DiffStore:
    """Writes each failure's JSON payload once, named by its blake3 digest.

    CI logs and local runs print the same digest for the same failure, so a
    digest in a log finds the artifact in a downloaded ``.pytest_cache``.
    """

    def __init__(self, root: Path, shown_root: str) -> None:
        self.root = root
        self.shown_root = shown_root

    def persist(self, payload: dict[str, Any]) -> tuple[str, str]:
        data = canonical_json(payload).encode("utf-8")
        hexdigest = digest(data)
        path = self.root / f"{hexdigest}.json"
        try:
            if not path.exists():
                atomic_write(path, data)
        except OSError:
            pass  # a read-only cache must not hide the real failure
        return hexdigest, f"{self.shown_root}/{hexdigest}.json"
