"""vcrpy's client stubs, patched in for one test at a time and pointed at that test's recorder.

The stubs (http.client, urllib3/requests, httpx, aiohttp, httplib2, tornado,
boto3) are built once per process around one proxy "cassette"; a test only
swaps them in and out, a few dozen ``setattr`` calls. vcrpy itself (which
imports every client library installed) is imported the first time a test
needs it: when a client library is already imported, or as soon as the test
imports one.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.abc
import sys
import threading
import types
from types import ModuleType
from typing import Any, Protocol

# Importing one of these means the test may make HTTP calls through it.
WATCHED = frozenset(
    {"http.client", "urllib3", "requests", "httpx", "aiohttp", "httplib2", "tornado", "botocore"}
)


class Target(Protocol):
    """What the proxy forwards to: the running test's HTTP recorder."""

    replaying: bool
    recording: bool

    def play(self, vcr_request: Any) -> dict[str, Any]: ...

    def record(self, vcr_request: Any, vcr_response: dict[str, Any]) -> None: ...


_current: Target | None = None

# Whether the client calling now reads the body as it went over the wire:
# http.client callers and httpx decode gzip themselves. urllib3's stub and
# aiohttp's hand over ``body.string`` as the decoded body, as those clients
# do live, so replay serves them the decoded body.
_wire_bodies: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pytest_replay_wire_bodies", default=True
)


def wire_bodies() -> bool:
    """True when the response body must go out encoded as recorded (gzip...)."""
    return _wire_bodies.get()


def _aiohttp_decoded(stub: Any) -> Any:
    @functools.wraps(stub)
    async def request(*args: Any, **kwargs: Any) -> Any:
        token = _wire_bodies.set(False)
        try:
            return await stub(*args, **kwargs)
        finally:
            _wire_bodies.reset(token)

    return request


def _urllib3_decoded(getresponse: Any) -> Any:
    @functools.wraps(getresponse)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        real = self.__dict__.get("real_connection")
        if not type(real).__module__.startswith("urllib3"):
            return getresponse(self, *args, **kwargs)
        token = _wire_bodies.set(False)
        try:
            return getresponse(self, *args, **kwargs)
        finally:
            _wire_bodies.reset(token)

    return wrapper


class _CassetteProxy:
    """What vcrpy's stubs take for a cassette; every call goes to the running test's recorder.

    Replaying, every request "can be played": the recorder serves it from
    its index or raises ``replay_missing_http``, so no stub ever connects.
    With no test running (a thread that outlived its test) requests go live.
    """

    _path = "pytest_replay"
    custom_patches = ()
    skip_patchers = ()
    record_mode = "none"
    rewound = True

    def can_play_response_for(self, request: Any) -> bool:
        target = _current
        return target is not None and target.replaying

    def play_response(self, request: Any) -> dict[str, Any]:
        target = _current
        if target is None:
            raise RuntimeError("pytest_replay: no test is running to replay this request")
        return target.play(request)

    @property
    def write_protected(self) -> bool:
        target = _current
        return target is not None and target.replaying

    def filter_request(self, request: Any) -> Any:
        return request

    def append(self, request: Any, response: dict[str, Any]) -> None:
        target = _current
        if target is not None and target.recording:
            target.record(request, response)

    def find_requests_with_most_matches(self, request: Any) -> list[Any]:
        return []  # aiohttp redirects then replay the hop by its own URL

    def __len__(self) -> int:
        return 0


_PROXY = _CassetteProxy()
_lock = threading.Lock()
_patches: list[tuple[Any, str, Any]] | None = None
_removers: list[Any] = []


def _build() -> list[tuple[Any, str, Any]]:
    """Every (target, attribute, stub) vcrpy would patch, built once per process."""
    global _patches
    with _lock:
        if _patches is None:
            from vcr.patch import CassettePatcherBuilder

            patches, removers = [], []
            for patcher in CassettePatcherBuilder(_PROXY).build():
                if hasattr(patcher, "getter") and hasattr(patcher, "attribute"):
                    obj, attr, new = patcher.getter(), patcher.attribute, patcher.new
                    if attr == "_request" and getattr(obj, "__module__", "").startswith("aiohttp"):
                        new = _aiohttp_decoded(new)
                    patches.append((obj, attr, new))
                else:  # a ConnectionRemover: drops our stub connections from urllib3 pools
                    removers.append(patcher)
            patches.extend(_thread_safe_resets())
            _removers[:] = removers
            _patches = patches
    return _patches


def _no_reset() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def _thread_safe_resets() -> list[tuple[Any, str, Any]]:
    """Stop vcrpy from un-patching every client process-wide while one connection is made.

    vcrpy's ``force_reset`` puts the real classes back for all threads while
    one stub builds its real connection, so a request another thread starts
    meanwhile goes out unrecorded (or live, on replay). The only real code
    that needs it is ``http.client.HTTPSConnection.__init__``, which finds
    its own class through the module global; it gets a copy of that
    ``__init__`` whose globals name the real class instead.
    """
    import http.client

    from vcr import patch as vcr_patch
    from vcr import stubs as vcr_stubs

    real = vcr_patch._HTTPSConnection
    init = real.__init__
    scope = dict(vars(http.client))
    scope["HTTPSConnection"] = real
    fixed = types.FunctionType(
        init.__code__, scope, init.__name__, init.__defaults__, init.__closure__
    )
    fixed.__kwdefaults__ = init.__kwdefaults__
    https = type("HTTPSConnection", (real,), {"__init__": fixed, "__module__": __name__})
    return [
        (vcr_patch, "force_reset", _no_reset),
        (vcr_stubs.VCRHTTPSConnection, "_baseclass", https),
        (
            vcr_stubs.VCRConnection,
            "getresponse",
            _urllib3_decoded(vcr_stubs.VCRConnection.getresponse),
        ),
    ]


class Activation:
    """The stubs swapped in for one test; ``undo`` puts back exactly what was there."""

    def __init__(self, target: Target) -> None:
        global _current
        self._saved: list[tuple[Any, str, Any, bool]] = []
        for obj, attr, new in _build():
            present = attr in vars(obj)
            self._saved.append((obj, attr, vars(obj)[attr] if present else None, present))
            setattr(obj, attr, new)
        for remover in _removers:
            remover.__enter__()
        _current = target

    def undo(self) -> None:
        global _current
        _current = None
        for remover in _removers:
            remover.__exit__(None, None, None)
            pools = getattr(remover, "_connection_pool_to_connections", None)
            if isinstance(pools, dict):
                pools.clear()  # do not keep a finished test's pools alive
        for obj, attr, old, present in reversed(self._saved):
            if present:
                setattr(obj, attr, old)
            else:
                delattr(obj, attr)
        self._saved.clear()


def clients_imported() -> bool:
    return any(name in sys.modules for name in WATCHED)


class _NotifyingLoader(importlib.abc.Loader):
    """Runs the real loader, then tells the watcher; the module keeps its real loader."""

    def __init__(self, loader: Any, watcher: ImportWatcher) -> None:
        self._loader = loader
        self._watcher = watcher

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        watcher = self._watcher
        watcher.depth += 1
        try:
            self._loader.exec_module(module)
        finally:
            watcher.depth -= 1
            module.__loader__ = self._loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self._loader
        if watcher.depth == 0:
            # The import system binds ``http.client`` on ``http`` only once this
            # returns; vcrpy's imports need it now.
            parent, _, child = module.__name__.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, module)
            watcher.fire()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class ImportWatcher(importlib.abc.MetaPathFinder):
    """Calls ``on_import`` once, right after the test first imports an HTTP client library."""

    def __init__(self, on_import: Any) -> None:
        self._on_import = on_import
        self.depth = 0
        self._looking = False
        self._fired = False

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in WATCHED or self._looking or self._fired:
            return None
        self._looking = True
        try:
            spec = None
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._looking = False
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _NotifyingLoader(spec.loader, self)
        return spec

    def install(self) -> None:
        sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def fire(self) -> None:
        if self._fired:
            return
        self._fired = True
        self.uninstall()
        self._on_import()
