"""Read evaluation inputs: prediction PNGs one file at a time from a folder or a zip, JSON.

Evaluators ask for one sequence or expression at a time, so a whole benchmark's masks
never sit in memory, and a submission zip can be scored without unpacking it.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from rvos.errors import DataError
from rvos.io import read_json

__all__ = ["MaskSource", "load_json", "open_masks"]


class MaskSource:
    """PNG files under a folder or under `prefix` inside a zip; paths are '/'-joined parts.

    Use as a context manager so an archive is closed. Methods:
    `exists(*parts)` (file or folder), `list(*parts)` (sorted entry names of a folder),
    `read_index(*parts)` (H, W) array as stored (palette indices for 'P' images),
    `read_gray(*parts)` (H, W) uint8 after conversion to 8-bit grayscale.
    """

    def __init__(self, path: str | Path, prefix: str = ""):
        self.path = Path(path)
        self.prefix = PurePosixPath(prefix.strip("/")) if prefix.strip("/") else None
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            self._files = {PurePosixPath(n) for n in self._zip.namelist() if not n.endswith("/")}
            self._dirs = {parent for name in self._files for parent in name.parents}
        elif not self.path.is_dir():
            raise DataError(f"{self.path}: expected a folder of PNG masks or a .zip of them")

    def __enter__(self) -> MaskSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def _member(self, parts: tuple[str, ...]) -> PurePosixPath:
        rel = PurePosixPath(*parts) if parts else PurePosixPath(".")
        return self.prefix / rel if self.prefix else rel

    def describe(self, *parts: str) -> str:
        """Human-readable location for error messages."""
        inner = self._member(parts)
        return f"{self.path}!{inner}" if self._zip is not None else str(self.path / inner)

    def exists(self, *parts: str) -> bool:
        if self._zip is None:
            return (self.path / self._member(parts)).exists()
        member = self._member(parts)
        return member in self._files or member in self._dirs

    def list(self, *parts: str) -> list[str]:
        if not self.exists(*parts):
            raise DataError(f"{self.describe(*parts)}: folder not found")
        if self._zip is None:
            return sorted(p.name for p in (self.path / self._member(parts)).iterdir())
        folder = self._member(parts)
        members = self._files | self._dirs
        return sorted(m.name for m in members if m.parent == folder and m != folder)

    def _open(self, parts: tuple[str, ...]) -> Image.Image:
        if not self.exists(*parts):
            raise DataError(f"{self.describe(*parts)}: mask file not found")
        if self._zip is None:
            return Image.open(self.path / self._member(parts))
        return Image.open(io.BytesIO(self._zip.read(str(self._member(parts)))))

    def read_index(self, *parts: str) -> np.ndarray:
        with self._open(parts) as image:
            array = np.array(image)
        if array.ndim != 2:
            raise DataError(
                f"{self.describe(*parts)}: expected a single-channel index PNG, got mode "
                f"{image.mode} with shape {array.shape}"
            )
        return array

    def read_gray(self, *parts: str) -> np.ndarray:
        with self._open(parts) as image:
            return np.array(image.convert("L"))


def open_masks(path: str | Path, prefix: str = "") -> MaskSource:
    """A `MaskSource` for a folder or a zip file (`prefix`: folder inside the archive)."""
    return MaskSource(path, prefix)


def load_json(source: str | Path | dict) -> dict:
    """A parsed JSON document, given as a path or already loaded."""
    return source if isinstance(source, dict) else read_json(source)
