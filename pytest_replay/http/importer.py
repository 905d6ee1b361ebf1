"""``pytest-replay import-vcr``: vcrpy / pytest-recording cassettes become ``http:`` sections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from ..blobs import BlobStore
from ..cassette import Cassette, save_document
from ..config import TestSettings
from ..context import RecorderContext
from ..errors import CassetteError, ReplayError
from ..modes import Mode
from .section import HttpRecorder

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Imported:
    source: Path
    target: Path
    interactions: int


def _raise(err: ReplayError) -> ReplayError:
    return err


def load_vcr(path: Path) -> list[dict[str, Any]]:
    """The interactions of a vcrpy cassette (YAML or JSON serializer)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_Loader)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise CassetteError(
            f"not a readable vcrpy cassette: {exc}", cassette=str(path), fix=None
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
        raise CassetteError(
            "not a vcrpy cassette (no 'interactions:' list)", cassette=str(path), fix=None
        )
    return data["interactions"]


def is_vcr_cassette(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False
    return "interactions" in head and "pytest_replay:" not in head


def _body(value: Any) -> bytes:
    if isinstance(value, dict):  # responses: {"string": ...}; old cassettes: {"base64_string"}
        if "base64_string" in value:
            import base64

            return base64.b64decode(value["base64_string"])
        value = value.get("string")
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def convert(interactions: list[dict[str, Any]], ctx: RecorderContext) -> dict[str, Any]:
    """Run each interaction through the same normalisation and redaction as a recording."""
    recorder = HttpRecorder(ctx)
    for i, item in enumerate(interactions):
        try:
            req, resp = item["request"], item["response"]
            request = SimpleNamespace(
                method=req["method"],
                uri=req["uri"],
                headers=req.get("headers") or {},
                body_bytes=_body(req.get("body")),
            )
            response = {
                "status": resp["status"],
                "headers": resp.get("headers") or {},
                "body": {"string": _body(resp.get("body"))},
            }
            recorder.record(request, response)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise CassetteError(
                f"vcrpy interaction #{i} cannot be read: {type(exc).__name__}: {exc}",
                cassette=ctx.shown,
                place=f"interactions[{i}]",
            ) from None
    return recorder.to_yaml()


def _test_id(path: Path) -> str:
    """pytest-recording's layout ``cassettes/<module>/<test>.yaml`` -> ``<module>.py::<test>``."""
    return f"{path.parent.name}.py::{path.stem}"


def _blob_root(target: Path) -> Path:
    for parent in target.parents:
        if (parent / ".blobs").is_dir():
            return parent / ".blobs"
    return target.parent.parent / ".blobs"


def import_file(
    source: Path,
    target: Path | None = None,
    *,
    test: str | None = None,
    redact: tuple[str, ...] = (),
) -> Imported:
    """Convert one vcrpy cassette; by default in place (the layouts are the same)."""
    target = target or source
    interactions = load_vcr(source)
    blobs = BlobStore(_blob_root(target))
    ctx = RecorderContext(
        nodeid=test or _test_id(target),
        mode=Mode.RECORD,
        run_mode=Mode.RECORD,
        cassette_path=target,
        shown=str(target),
        blobs=blobs,
        recorded=None,
        settings=TestSettings({"redact": list(redact)}),
        error=_raise,
    )
    sections = convert(interactions, ctx)
    blobs.flush()
    save_document(target, Cassette.new_document(ctx.nodeid, sections))
    return Imported(source, target, len(interactions))


def find_vcr_cassettes(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for found in sorted(
                [*path.rglob("*.yaml"), *path.rglob("*.yml"), *path.rglob("*.json")]
            ):
                if ".blobs" not in found.parts and is_vcr_cassette(found):
                    yield found
        elif path.is_file():
            yield path
