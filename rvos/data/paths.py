"""Paths that dataset files name, kept inside the dataset.

Video ids, frame names and file paths come from the datasets' own JSON, CSV, text and pickle
files. A broken or hostile file could name an absolute path, climb out with '..', or name a
folder that a link inside the tree carries elsewhere. Readers take every such value through
these checks, which raise an UnsafePathError naming the file, the key and the value:

- `plain_name`: one file or folder name (a video id, a frame name);
- `relative_path`: a relative path without '..' (paths stored in sample lists);
- `inside`: `base / value`, where the folder it reaches must resolve inside `base`.

Files themselves may be links (DVC's symlink cache links every file of a tracked tree), and so
may `base` (a dataset linked in from another disk); a folder reached through a value may not
lead outside `base`.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from rvos.errors import UnsafePathError

_FORBIDDEN = ("\\", "\x00")  # a Windows separator and the byte no file name may hold


def plain_name(value: Any, *, source: str | Path, key: str) -> str:
    """`value` when it is one file or folder name: no '/', '\\' or NUL, not '', '.' or '..'."""
    if (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or "/" in value
        or any(c in value for c in _FORBIDDEN)
    ):
        raise UnsafePathError(
            f"{source}: {key} {value!r}: expected a plain file or folder name "
            "(no '/', '\\', '.' or '..')"
        )
    return value


def relative_path(value: Any, *, source: str | Path, key: str) -> PurePosixPath:
    """`value` as a relative '/'-separated path that never climbs with '..'."""
    if not isinstance(value, str) or any(c in value for c in _FORBIDDEN):
        raise UnsafePathError(
            f"{source}: {key} {value!r}: expected a relative path ('/'-separated)"
        )
    path = PurePosixPath(value)
    if path.is_absolute():
        raise _escapes(source, key, value, "an absolute path")
    if ".." in path.parts:
        raise _escapes(source, key, value, "it climbs out with '..'")
    if not path.parts:
        raise UnsafePathError(f"{source}: {key} {value!r}: expected a relative path, got none")
    return path


def inside(base: Path, value: Any, *, source: str | Path, key: str) -> Path:
    """`base / value`, refused unless the folder it reaches resolves inside `base`."""
    path = base / relative_path(value, source=source, key=key)
    folder = path if path.is_dir() else path.parent
    target = folder.resolve()
    if not target.is_relative_to(base.resolve()):
        raise _escapes(source, key, value, f"a link leads to {target}", base)
    return path


def _escapes(
    source: str | Path, key: str, value: str, why: str, base: Path | None = None
) -> UnsafePathError:
    where = f" {base}" if base is not None else " the dataset root"
    return UnsafePathError(
        f"{source}: {key} {value!r} escapes{where} ({why}); expected a path inside it"
    )
