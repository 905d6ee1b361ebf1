"""What every recorder (facts, steps, rings, arrays) is handed by the test's session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .blobs import BlobStore
from .errors import ReplayError
from .modes import Mode


@dataclass
class RecorderContext:
    """One test's mode, cassette and error sink, shared by its recorders."""

    nodeid: str
    mode: Mode  # effective mode for this test (replay without a cassette = record)
    run_mode: Mode  # the mode the run asked for
    cassette_path: Path
    shown: str
    blobs: BlobStore
    recorded: dict[str, Any] | None  # the parsed cassette, None when there is none
    settings: Any
    error: Callable[[ReplayError], ReplayError]  # adds context, persists the diff
    hook: Any = None  # pytest's hook relay, None outside pytest

    def section(self, name: str, default: Any = None) -> Any:
        return default if self.recorded is None else self.recorded.get(name, default)


class Recorder(Protocol):
    """A kind of recorded thing: it serialises, compares and reports itself."""

    def to_yaml(self) -> dict[str, Any]:
        """The cassette sections to save for this kind (empty when nothing recorded)."""

    def unused(self) -> list[str]:
        """Recorded items the test never reached, one readable line each."""

    @property
    def new_count(self) -> int:
        """Items added to an existing cassette by this run (a PARTIAL replay)."""

    def finish(self) -> None:
        """Checks that can only run once the test body is done; raise on failure."""

    def save_files(self) -> None:
        """Write side files that go with a saved cassette (ring logs); blobs are flushed apart."""

    # Optional: ``close()``, called at the replay fixture's teardown whatever the
    # outcome, undoes what the recorder put in place (HTTP stubs, the network block).
