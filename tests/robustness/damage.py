"""Damage for the bad-input matrix: what a case is, and the ways to break one input."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from rvos.errors import DataError

MARKER = "pwned"  # what hostile code would create beside the tree
BOMB = 100_000  # a header's claimed width and height: 10^10 pixels

LIMIT = r"image is 9000x9000 = 81000000 pixels, above the limit of 67108864 \(raise rvos"


@dataclass(frozen=True)
class Case:
    """`breaks` damages one input of a valid `tree`; `reads` must then raise `error` with a
    one-line message matching `message`. `prepare` runs on the intact tree first (what a
    training run indexed before the file went bad) and `reads` gets its result instead of the
    tree; `limits` lower rvos.data.media's limits for the case."""

    kind: str
    fault: str
    breaks: Callable[[Path], Any]
    message: str
    tree: str
    reads: Callable[[Any], Any]
    error: type[Exception] = DataError
    prepare: Callable[[Path], Any] | None = None
    limits: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.kind}: {self.fault}"


# ------------------------------------------------------------------------ damage


def at(locate: Callable[[Path], Path], damage: Callable[[Path], Any]) -> Callable[[Path], Any]:
    """Apply `damage` to the file or folder `locate` finds in the tree."""
    return lambda root: damage(locate(root))


def unchanged(root: Path) -> None:
    """No damage: the fault lies in how the input is read (another model, lower limits)."""


def remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x13not what the name says\n" * 8)


def text_file(path: Path) -> None:
    path.write_text("this is a text file, whatever its name says\n")


def bomb_png(path: Path, width: int = BOMB, height: int = BOMB) -> None:
    """A valid PNG header claiming width x height pixels, with no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def above_limit_png(path: Path) -> None:
    """Under Pillow's own bomb limit but above rvos.data.media.MAX_IMAGE_PIXELS."""
    bomb_png(path, 9000, 9000)


def edit_json(change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = json.loads(path.read_text())
        path.write_text(json.dumps(change(data)))

    return damage


def write_text(text: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda path: path.write_bytes(text.encode(encoding))


def first(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))[0]


class RunsCommand:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def linked_outside(locate: Callable[[Path], Path]) -> Callable[[Path], None]:
    """Move a folder out of the tree and leave a link to it in its place."""

    def breaks(root: Path) -> None:
        path = locate(root)
        outside = root.parent / "elsewhere" / path.name
        outside.parent.mkdir()
        shutil.move(path, outside)
        path.symlink_to(outside, target_is_directory=True)

    return breaks


def under(*parts: str) -> Callable[[Path], Path]:
    return lambda root: root.joinpath(*parts)


def save_image(mode: str, size: tuple[int, int]) -> Callable[[Path], None]:
    return lambda path: Image.new(mode, size).save(path, format="PNG")


def kind(name: str, tree: str, reads: Callable[[Any], Any], **defaults: Any) -> Callable:
    """The Case factory of one kind of input: kind(...)(fault, breaks, message, **overrides)."""
    return partial(Case, name, tree=tree, reads=reads, **defaults)


def edit_text(edit: Callable[[str], str]) -> Callable[[Path], None]:
    return lambda path: path.write_text(edit(path.read_text()))
