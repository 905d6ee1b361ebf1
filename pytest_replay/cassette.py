"""Cassette files: naming, schema, safe loading and byte-stable atomic saving."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .blobs import BlobStore, atomic_write
from .canonical import digest
from .errors import CassetteError, SchemaVersionError, restore_fix
from .fingerprint import FINGERPRINT_KEY

SCHEMA_VERSION = 1
HEADER_KEYS = ("pytest_replay", "test", FINGERPRINT_KEY)
# Stored for people, never compared: a re-record that changes only these
# leaves the file byte-for-byte untouched.
# Where volatile values sit: stored, never compared. Paths, not key names,
# so a user's own field called duration_ms inside a step output still counts.
# The environment fingerprint is one: re-recording the same behaviour on
# another machine keeps the file (and its old fingerprint).
VOLATILE_PATHS: tuple[tuple[str, ...], ...] = (
    ("recorded_at",),
    (FINGERPRINT_KEY,),
    ("steps", "*", "attempts", "*", "duration_ms"),
)

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class Block(str):
    """Text emitted as a YAML literal block (``|``): one record per line, diff-friendly."""


class _Dumper(_BaseDumper):
    def ignore_aliases(self, data: Any) -> bool:
        # Anchors/aliases would make equal data render differently by history.
        return True


def _represent_float(dumper: Any, value: float) -> Any:
    # One fixed format: shortest round-trip repr, YAML spellings for specials.
    if math.isnan(value):
        text = ".nan"
    elif math.isinf(value):
        text = ".inf" if value > 0 else "-.inf"
    else:
        text = repr(value)
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)  # YAML 1.1 floats need a dot
        elif "." not in text and "e" not in text:
            text += ".0"
    return dumper.represent_scalar("tag:yaml.org,2002:float", text)


def _represent_block(dumper: Any, value: Block) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")


_Dumper.add_representer(float, _represent_float)
_Dumper.add_representer(Block, _represent_block)


# --- naming -----------------------------------------------------------------------

_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)
MAX_NAME_BYTES = 150  # leaves room for ".yaml" and ".<ring>.vrrl" under 255


def sanitize_component(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """One safe path component: no separators, no '..', nothing a filesystem rejects.

    Long names keep a readable prefix and get a digest suffix, so two long
    ids that share a prefix still map to different files.
    """
    safe = _FORBIDDEN.sub("_", name).replace("..", "__").strip(" .") or "_"
    if safe.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        safe = "_" + safe
    if len(safe.encode("utf-8")) > max_bytes:
        head = safe.encode("utf-8")[: max(max_bytes - 17, 1)].decode("utf-8", "ignore")
        safe = f"{head}-{digest(name)[:16]}"
    elif safe != name:
        # 'a/b' and 'a_b' would otherwise share one file and replay each other.
        safe = f"{safe}-{digest(name)[:8]}"
    return safe


def cassette_root(module_path: Path, rootdir: Path, replay_dir: Path | None) -> Path:
    """The directory holding cassettes (and ``.blobs``) for tests of this module."""
    if replay_dir is not None:
        return replay_dir
    return module_path.parent / "cassettes"


def cassette_path(
    *,
    module_path: Path,
    rootdir: Path,
    test_parts: Sequence[str],
    replay_dir: Path | None = None,
    name_override: str | None = None,
) -> Path:
    """Where one test's cassette lives.

    Default: ``<test file dir>/cassettes/<module stem>/<Class.test[param]>.yaml``;
    with a replay dir: ``DIR/<module path from rootdir, no .py>/<...>.yaml``.
    """
    root = cassette_root(module_path, rootdir, replay_dir)
    if replay_dir is not None:
        try:
            rel = module_path.with_suffix("").relative_to(rootdir)
            folder_parts = rel.parts
        except ValueError:  # module outside rootdir: keep it apart by a digest
            folder_parts = (f"{module_path.stem}-{digest(str(module_path))[:8]}",)
    else:
        folder_parts = (module_path.stem,)
    stem = name_override if name_override else ".".join(test_parts)
    if stem.endswith(".yaml"):
        stem = stem[: -len(".yaml")]
    path = root.joinpath(*(sanitize_component(p) for p in folder_parts), sanitize_component(stem))
    path = path.with_name(path.name + ".yaml")
    # Defence in depth: whatever the ids were, the file stays under the root.
    if not os.path.abspath(path).startswith(os.path.abspath(root) + os.sep):
        raise CassetteError(
            f"cassette path {path} escapes {root}",
            fix="use a relative cassette name without '..' in "
            "@pytest.mark.replay(cassette=...) or replay_config",
        )
    return path


def display_path(path: Path, rootdir: Path) -> str:
    """A path as messages show it: relative to rootdir when possible."""
    try:
        return str(path.relative_to(rootdir))
    except ValueError:
        return str(path)


# --- documents --------------------------------------------------------------------


def _normalise(value: Any) -> Any:
    """Sorted keys at every depth, so equal data dumps to equal bytes."""
    if isinstance(value, Block):
        return value
    if isinstance(value, Mapping):
        return {k: _normalise(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def dump_document(doc: Mapping[str, Any]) -> bytes:
    """Render a cassette: header keys first, then sections in sorted order."""
    ordered = {k: doc[k] for k in HEADER_KEYS if k in doc}
    for key in sorted(k for k in doc if k not in HEADER_KEYS):
        ordered[key] = doc[key]
    text = yaml.dump(
        {k: _normalise(v) for k, v in ordered.items()},
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
        line_break="\n",
    )
    return text.encode("utf-8")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while loading builds many acyclic objects.

    A 100k-fact cassette makes a few hundred thousand dicts, lists and
    strings; the collector's passes over them took about 45% of the load
    time, and nothing made here is cyclic garbage.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def is_count(value: Any) -> bool:
    """A count or index as a cassette or a setting may hold it: an int >= 0, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_document(data: bytes, path: Path, shown: str) -> dict[str, Any]:
    """Parse and validate the header; any bad input becomes one CassetteError."""
    try:
        doc = yaml.load(data, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise CassetteError(
            f"cassette is not valid YAML: {exc.problem or exc}",
            cassette=shown,
            place=where,
            fix="restore it from version control, or delete it and re-record: "
            "pytest --replay=record {test}",
        ) from None
    except yaml.reader.ReaderError as exc:
        # Bytes or characters YAML refuses before parsing: say which, and where.
        summary, where, details = _unreadable_text(data, exc)
        raise CassetteError(
            summary, cassette=shown, place=where, details=details, fix=restore_fix()
        ) from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise CassetteError(
            f"cassette cannot be read as YAML: {type(exc).__name__}",
            cassette=shown,
            fix="restore it from version control, or delete it and re-record: "
            "pytest --replay=record {test}",
        ) from None
    if not isinstance(doc, dict) or "pytest_replay" not in doc:
        raise CassetteError(
            "file is not a pytest_replay cassette (no 'pytest_replay:' schema header)",
            cassette=shown,
            fix="delete it and re-record: pytest --replay=record {test}",
        )
    version = doc["pytest_replay"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise SchemaVersionError(
            f"cassette schema version must be the integer {SCHEMA_VERSION}, "
            f"got {type(version).__name__} {version!r}",
            cassette=shown,
            place="pytest_replay:",
            recorded=repr(version),
            current=SCHEMA_VERSION,
            fix=f"write 'pytest_replay: {SCHEMA_VERSION}' (no quotes) on the first line, "
            "or re-record: pytest --replay=record {test}",
        )
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"unknown cassette schema version {version!r}; this pytest_replay reads "
            f"version {SCHEMA_VERSION}",
            cassette=shown,
            recorded=version,
            current=SCHEMA_VERSION,
            fix="upgrade pytest-replay-cassettes to the version that wrote it, "
            "or re-record: pytest --replay=record {test}",
        )
    if not isinstance(doc.get("test", ""), str):
        raise CassetteError("cassette 'test:' must be a string", cassette=shown, fix=restore_fix())
    if _shares_nodes(doc):
        # The writer never emits anchors; an alias can make a document refer to
        # itself (a: &x [*x]) and send any walker of it into endless recursion.
        raise CassetteError(
            "cassette uses YAML anchors/aliases, which pytest_replay never writes",
            cassette=shown,
            fix=restore_fix(),
        )
    return doc


# What YAML accepts in a stream (YAML 1.1, 5.1): tab, line ends, printable text.
_NOT_YAML_TEXT = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_UTF8_BOM = b"\xef\xbb\xbf"


def _unreadable_text(data: bytes, exc: yaml.reader.ReaderError) -> tuple[str, str, list[str]]:
    """(summary, place, details) for a file YAML's reader refused: its first bad byte or char.

    PyYAML's own message counts characters or bytes depending on the loader
    (and reads "ReaderError" where the C loader is used), so the position is
    found here: a byte offset, and a line and column an editor can jump to.
    """
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    # Bytes that are not UTF-8 become lone surrogates, which the pattern refuses too.
    text = data[start:].decode("utf-8", "surrogateescape")
    found = _NOT_YAML_TEXT.search(text)
    if found is None:  # refused for a reason of the reader's own: pass it on
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return f"cassette cannot be read as YAML: {reason}", "unknown place", []
    index = found.start()
    offset = start + len(text[:index].encode("utf-8", "surrogateescape"))
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    where = f"line {line}, column {column} (byte offset {offset})"
    binary = " (a binary file?)" if b"\x00" in data[: offset + 512] else ""
    code = ord(found.group())
    if 0xDC80 <= code <= 0xDCFF:
        return (
            f"cassette is not UTF-8 text{binary}: byte 0x{code - 0xDC00:02x} at offset {offset}",
            where,
            [
                "pytest_replay writes cassettes as UTF-8 YAML; "
                "something else was written or copied over this file"
            ],
        )
    return (
        f"cassette holds a character YAML does not allow{binary}: U+{code:04X} at offset {offset}",
        where,
        [
            "pytest_replay writes control characters escaped (\\x01), "
            "never raw; the file was edited or damaged"
        ],
    )


def _shares_nodes(doc: Any) -> bool:
    """Whether a container appears twice in the tree (what an alias makes)."""
    seen: set[int] = set()
    stack: list[Any] = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)):
            if id(item) in seen:
                return True
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
    return False


def strip_volatile(doc: Any, paths: tuple[tuple[str, ...], ...] = VOLATILE_PATHS) -> Any:
    """``doc`` without the values at ``paths`` (``*`` matches every list item)."""
    for path in paths:
        doc = _strip_path(doc, path)
    return doc


def strip_volatile_section(section: str, value: Any, *, item: bool = False) -> Any:
    """One section's value (or, with ``item``, one item of a list section) without volatiles."""
    prefix = (section, "*") if item else (section,)
    n = len(prefix)
    paths = tuple(p[n:] for p in VOLATILE_PATHS if p[:n] == prefix and len(p) > n)
    return strip_volatile(value, paths)


def _strip_path(value: Any, path: tuple[str, ...]) -> Any:
    head, rest = path[0], path[1:]
    if head == "*":
        return [_strip_path(v, rest) for v in value] if isinstance(value, list) else value
    if not isinstance(value, Mapping) or head not in value:
        return value
    out = dict(value)
    if rest:
        out[head] = _strip_path(value[head], rest)
    else:
        del out[head]
    return out


class Cassette:
    """One test's cassette file: the parsed document plus where it lives.

    Sections (``facts``, ``http``, ``steps``...) are kept as parsed YAML;
    each feature module decodes its own section with its ``from_yaml``.
    """

    def __init__(self, path: Path, doc: dict[str, Any], *, shown: str, blobs: BlobStore) -> None:
        self.path = path
        self.doc = doc
        self.shown = shown
        self.blobs = blobs

    @property
    def test(self) -> str:
        return str(self.doc.get("test", ""))

    def section(self, name: str, default: Any = None) -> Any:
        return self.doc.get(name, default)

    @classmethod
    def load(cls, path: Path, *, blobs: BlobStore, shown: str | None = None) -> Cassette:
        shown = shown or str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CassetteError(
                f"cassette cannot be read: {exc.strerror or exc}",
                cassette=shown,
                fix="check the file's permissions, or re-record: pytest --replay=record {test}",
            ) from None
        with gc_paused():
            doc = parse_document(data, path, shown)
        return cls(path, doc, shown=shown, blobs=blobs)

    @staticmethod
    def new_document(
        test: str, sections: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {"pytest_replay": SCHEMA_VERSION, "test": test}
        if env:
            doc[FINGERPRINT_KEY] = dict(env)
        doc.update({k: v for k, v in sections.items() if v})
        return doc


def save_document(path: Path, doc: Mapping[str, Any]) -> bool:
    """Write ``doc`` atomically unless the file already holds the same behaviour.

    Returns True when the file was (re)written. "Same behaviour" means equal
    after dropping volatile fields; then the old bytes stay, so re-recording
    an unchanged test never shows up in ``git status``.
    """
    data = dump_document(doc)
    if path.exists():
        try:
            old_bytes = path.read_bytes()
            if old_bytes == data:
                return False
            old = yaml.load(old_bytes, Loader=_Loader)
            new = yaml.load(data, Loader=_Loader)
            if strip_volatile(old) == strip_volatile(new):
                return False
        except (OSError, yaml.YAMLError, ValueError, TypeError, RecursionError):
            pass  # unreadable old file: overwrite it with a good one
    atomic_write(path, data)
    return True
