"""Randomness of code under test: seeded generators, and OS entropy served as recorded facts."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import types
import uuid
from collections.abc import Callable
from typing import Any

from .frames import caller, live_call

_real_urandom = os.urandom
_orig_seed = random.Random.seed
_NUMPY_SEED_MAX = 2**32


def derive(seed: int, *parts: object) -> int:
    """A 64-bit seed for one consumer, from the test's recorded seed and a label."""
    text = repr((seed, *parts)).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def new_seed() -> int:
    """The per-test seed recorded on the first run (real OS entropy, read before patching)."""
    return int.from_bytes(_real_urandom(8), "big") >> 1


class _UuidOs(types.ModuleType):
    """What the uuid module sees as ``os``: ``urandom`` draws facts, the rest is the real os."""

    def __init__(self, draw: Callable[[int], bytes]) -> None:
        super().__init__("os")
        self.urandom = draw

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


class Randomness:
    """Seeds ``random``, NumPy's global state and unseeded generators; OS entropy from facts.

    ``draw(n, where)`` returns n recorded bytes for a draw made by module
    ``where``; the recorder behind it keys the facts by that module, so an
    unrelated module's draws never shift the values another module gets.
    """

    def __init__(
        self, seed: int, draw: Callable[[int, str], bytes], *, generators: bool, uuids: bool
    ) -> None:
        self.seed = seed
        self._draw = draw
        self._generators = generators  # random=True: seed generators, patch os entropy
        self._uuids = uuids  # uuid=True: uuid4 draws facts even when random is off
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._undo: list[Callable[[], None]] = []
        self._numpy: Any = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        try:
            if self._generators:
                self._patch_numpy()  # first: a first import of NumPy draws real entropy
                self._patch_random()
                self._patch_os()
            if self._uuids:
                self._patch(uuid, "os", _UuidOs(self.urandom))
            self.reseed("setup")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Put back every original, last patched first; safe to call twice."""
        while self._undo:
            self._undo.pop()()

    def reseed(self, phase: str) -> None:
        """Seed ``random`` and NumPy's global state for one phase of the test (setup, call)."""
        if not self._generators:
            return
        _orig_seed(random._inst, derive(self.seed, "random", phase))  # type: ignore[attr-defined]
        if self._numpy is not None:
            self._numpy.random.seed(derive(self.seed, "numpy", phase) % _NUMPY_SEED_MAX)

    # -- the patched functions ---------------------------------------------------------

    def urandom(self, size: Any) -> bytes:
        """``os.urandom``: recorded bytes, or real ones inside a fact or an import."""
        if type(size) is not int or size < 0 or live_call.get():
            return _real_urandom(size)
        where, importing = caller()
        if importing:
            return _real_urandom(size)
        return self._draw(size, where)

    def _next(self, kind: str, where: str) -> int:
        with self._lock:
            k = self._counts.get((kind, where), 0)
            self._counts[(kind, where)] = k + 1
        return derive(self.seed, kind, where, k)

    def _unseeded(self, kind: str) -> int | None:
        """A derived seed for an unseeded generator, or None to leave it to the OS."""
        if live_call.get():
            return None
        where, importing = caller()
        return None if importing else self._next(kind, where)

    # -- patching ------------------------------------------------------------------------

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        old = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        setattr(owner, name, value)
        self._undo.append(lambda: setattr(owner, name, old))

    def _patch_random(self) -> None:
        state = random.getstate()
        self._undo.append(lambda: random.setstate(state))
        ambient = self

        def seed(self: random.Random, a: Any = None, version: int = 2) -> None:
            if a is None:
                a = ambient._unseeded("Random")
            _orig_seed(self, a, version)

        def module_seed(a: Any = None, version: int = 2) -> None:
            if a is None:
                a = ambient._unseeded("random.seed")
            _orig_seed(random._inst, a, version)  # type: ignore[attr-defined]

        self._patch(random.Random, "seed", seed)
        self._patch(random, "seed", module_seed)
        # SystemRandom (and so secrets) reads entropy through this name.
        self._patch(random, "_urandom", self.urandom)

    def _patch_os(self) -> None:
        self._patch(os, "urandom", self.urandom)

    def _patch_numpy(self) -> None:
        try:
            import numpy
        except ImportError:  # pragma: no cover - numpy is a dependency
            return
        self._numpy = numpy
        state = numpy.random.get_state()
        self._undo.append(lambda: numpy.random.set_state(state))
        original = numpy.random.default_rng
        ambient = self

        def default_rng(seed: Any = None) -> Any:
            if seed is None:
                derived = ambient._unseeded("default_rng")
                if derived is not None:
                    seed = numpy.random.SeedSequence(derived)
            return original(seed)

        default_rng.__doc__ = original.__doc__
        self._patch(numpy.random, "default_rng", default_rng)
