"""Atomic writes: a reader never sees a half-written file or directory.

A file is written to a temporary file in the target's directory and moved into place with
`os.replace`, which is atomic on POSIX filesystems. A directory of outputs is built in a
staging directory beside it and swapped in once complete (`atomic_dir`), so a killed run
leaves the previous complete directory (or none), never a mix that DVC would record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rvos.errors import DataError, OutputExistsError


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


_STAGING, _PREVIOUS = ".staging-", ".previous-"  # name parts of atomic_dir's siblings


@contextlib.contextmanager
def atomic_dir(root: str | Path, marker: str) -> Iterator[Path]:
    """Yield an empty staging directory beside `root` that replaces `root` once the block ends.

    An existing `root` is replaced only when it is empty or holds `marker` (a file every complete
    tree has), so a mistyped path never wipes an unrelated directory. What a killed run left
    beside `root` is cleaned up first; one writer per directory at a time.
    """
    root = Path(root)
    _recover(root)
    if not _replaceable(root, marker):
        raise OutputExistsError(f"{root}: exists and holds no {marker}; not replacing it")
    root.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{root.name}"
    staging = Path(tempfile.mkdtemp(prefix=prefix + _STAGING, dir=root.parent))
    previous = staging.with_name(prefix + _PREVIOUS + staging.name.removeprefix(prefix + _STAGING))
    try:
        yield staging
        staging.chmod(0o755)
        if root.exists():
            os.replace(root, previous)
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if previous.exists() and not root.exists():
            os.replace(previous, root)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _replaceable(root: Path, marker: str) -> bool:
    if not root.exists():
        return True
    return root.is_dir() and (not any(root.iterdir()) or (root / marker).exists())


def _recover(root: Path) -> None:
    """Remove the staging directories of killed runs; put back a tree moved aside for a swap
    that a kill interrupted."""
    if not root.parent.is_dir():
        return
    for entry in sorted(root.parent.iterdir()):
        if entry.name.startswith(f".{root.name}{_PREVIOUS}") and not root.exists():
            os.replace(entry, root)
        elif entry.name.startswith((f".{root.name}{_STAGING}", f".{root.name}{_PREVIOUS}")):
            shutil.rmtree(entry, ignore_errors=True)


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
