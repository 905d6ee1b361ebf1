"""vcrpy's client stubs, patched in for one test at a time and pointed at that test's recorder.

The stubs (http.client, urllib3/requests, httpx, aiohttp, httplib2, tornado,
boto3) are built once per process around one proxy "cassette"; a test only
swaps them in and out, a few dozen ``setattr`` calls. vcrpy itself (which
imports every client library installed) is imported the first time a test
needs it: when a client library is already imported, or as soon as the test
imports one.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.abc
import sys
import threading
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

# Set while aiohttp's stub runs: it serves ``body.string`` as the decoded
# body, where every other stub hands the bytes to a client that decodes them.
_client_decodes: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pytest_replay_client_decodes", default=True
)


def client_decodes() -> bool:
    """Whether the client calling now decodes gzip/deflate bodies itself."""
    return _client_decodes.get()


def _serves_decoded(stub: Any) -> Any:
    @functools.wraps(stub)
    async def request(*args: Any, **kwargs: Any) -> Any:
        token = _client_decodes.set(False)
        try:
            return await stub(*args, **kwargs)
        finally:
            _client_decodes.reset(token)

    return request


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
                        new = _serves_decoded(new)
                    patches.append((obj, attr, new))
                else:  # a ConnectionRemover: drops our stub connections from urllib3 pools
                    removers.append(patcher)
            _removers[:] = removers
            _patches = patches
    return _patches


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
