"""The kinds of recorded things beyond facts: each installs itself on a test's session."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import Recorder
    from .session import ReplaySession

# Each installer builds its recorder from session.context, binds its public
# methods onto the session (replay.step, replay.ring...) and returns it.
Installer = Callable[["ReplaySession"], "Recorder"]


def installers() -> list[Installer]:
    """Imported lazily so a test that never records steps or rings never imports them."""
    from .arrays import install as arrays
    from .http.section import install as http
    from .ring.section import install as rings
    from .steps import install as steps
    from .tools import install as tools

    # tools before steps: a step's attempts collect their tool events from it.
    # http last: it patches clients, so nothing after it may fail half-way.
    return [arrays, rings, tools, steps, http]
