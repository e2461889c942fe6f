"""Images, videos and annotation arrays opened within size limits.

A decompression bomb (a small file that decodes to gigabytes) or a header claiming absurd
sizes is refused from the header, before anything is decoded:

- MAX_IMAGE_PIXELS bounds width x height of one image, video frame or mask frame;
- MAX_DECODED_BYTES bounds what one video (frames x height x width x 3) or one annotation
  array (.h5, .mat) takes once decoded.

The limits are read at every call: to accept larger input, assign the module attributes
(`rvos.data.media.MAX_IMAGE_PIXELS = ...`) before reading, or edit them here for the pipeline.
Pillow refuses on its own images above twice `PIL.Image.MAX_IMAGE_PIXELS` (about 179
megapixels); raise that too to go beyond it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
from PIL import Image, UnidentifiedImageError

from rvos.errors import DataError

MAX_IMAGE_PIXELS = 8192 * 8192
MAX_DECODED_BYTES = 4 * 2**30
_RGB = 3  # bytes per decoded video pixel


def check_pixels(source: str | Path, what: str, width: int, height: int) -> None:
    """Refuse a `width` x `height` image, frame or mask above MAX_IMAGE_PIXELS."""
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(
            f"{source}: {what} is {width}x{height} = {width * height} pixels, above the limit "
            f"of {MAX_IMAGE_PIXELS} (raise rvos.data.media.MAX_IMAGE_PIXELS to accept it)"
        )


def check_decoded_bytes(source: str | Path, what: str, size: int) -> None:
    """Refuse a video or array that would take more than MAX_DECODED_BYTES once decoded."""
    if size > MAX_DECODED_BYTES:
        raise DataError(
            f"{source}: {what} would take {_in_units(size)} decoded, above the limit of "
            f"{_in_units(MAX_DECODED_BYTES)} (raise rvos.data.media.MAX_DECODED_BYTES to accept it)"
        )


def _in_units(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value, unit = float(size), "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}" if unit != "bytes" else f"{size} bytes"


def check_array(
    source: str | Path,
    key: str,
    shape: tuple[int, ...],
    itemsize: int,
    frame: tuple[int, int] | None = None,
) -> None:
    """Refuse an annotation array, from its stored shape, whose frame (width, height) or
    whole size is above the limits."""
    if frame is not None:
        check_pixels(source, f"{key!r} frame", *frame)
    check_decoded_bytes(source, f"{key!r} of shape {tuple(shape)}", math.prod(shape) * itemsize)


# ---------------------------------------------------------------------------------- images


def open_image(path: Path) -> Image.Image:
    """The image at `path` with only its header read, refused above MAX_IMAGE_PIXELS."""
    try:
        with warnings.catch_warnings():  # the size is judged below, against our own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except Image.DecompressionBombError as err:
        raise DataError(
            f"{path}: refused by Pillow as a decompression bomb ({err}); raise "
            "PIL.Image.MAX_IMAGE_PIXELS and rvos.data.media.MAX_IMAGE_PIXELS to accept it"
        ) from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from None
    try:
        check_pixels(path, "image", *image.size)
    except DataError:
        image.close()
        raise
    return image


def load_image(path: Path, mode: str | None = None) -> Image.Image:
    """The decoded image at `path` (converted to `mode` when given), within the size limit."""
    with open_image(path) as image:
        try:
            image.load()
            return image.convert(mode) if mode is not None else image
        except OSError as err:  # truncated or corrupt pixel data
            raise DataError(f"{path}: not a readable image ({err})") from None


# ---------------------------------------------------------------------------------- videos


@contextmanager
def open_video(path: Path, streamed: bool = False) -> Iterator[cv2.VideoCapture]:
    """An OpenCV capture of `path`, refused before decoding when its container reports a frame
    above MAX_IMAGE_PIXELS or, unless the caller decodes one frame at a time (`streamed`), a
    video above MAX_DECODED_BYTES."""
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DataError(f"{path}: not a readable video (OpenCV cannot open it)")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        check_pixels(path, "video frame", width, height)
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # 0 or less when unknown
        if not streamed:
            check_decoded_bytes(
                path, f"{max(frames, 0)} frames", video_bytes(frames, height, width)
            )
        yield capture
    finally:
        capture.release()


def video_bytes(frames: int, height: int, width: int) -> int:
    """Bytes of `frames` decoded RGB frames of height x width."""
    return max(frames, 0) * height * width * _RGB
