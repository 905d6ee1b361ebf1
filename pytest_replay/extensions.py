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
    from .ambient import install as ambient
    from .arrays import install as arrays
    from .http.section import install as http
    from .ring.section import install as rings
    from .steps import install as steps
    from .tools import install as tools

    # tools before steps: a step's attempts collect their tool events from it.
    # http and ambient last: they patch clients, the clock and randomness, so
    # no installer after them can fail half-way (the session also closes what
    # was installed when one fails).
    return [arrays, rings, tools, steps, http, ambient]
