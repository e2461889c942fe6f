"""Atomic file writes: a reader never sees a half-written file.

Everything is written to a temporary file in the target's directory and moved into
place with `os.replace`, which is atomic on POSIX filesystems.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rvos.errors import DataError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of `path`; on success it replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or malformed file is a DataError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: JSON file not found") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=indent)
        handle.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def save_image(path: str | Path, image: Any) -> None:
    """Save a PIL image atomically; the format follows the file suffix."""
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        image.save(handle, format=_FORMATS[path.suffix.lower()])


_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}
