"""Scenes for the procedural demo data: shapes, motions, backgrounds, masks and painting.

Every object is a polygon. Its mask is the polygon rasterised by pycocotools, the same rasteriser
that readers use on COCO polygons, and its colour is painted exactly on that mask, so the image,
the palette annotation and the stored polygon always agree.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

# Saturated, clearly distinct colours; backgrounds stay grey-ish so they cannot be confused.
# No colour name contains "left" or "right" (a horizontal flip swaps those substrings).
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 175, 60),
    "blue": (45, 85, 225),
    "yellow": (240, 215, 40),
    "purple": (150, 60, 200),
    "orange": (245, 135, 25),
    "white": (242, 242, 242),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon")
# Diameter range in pixels at a 128-pixel short side; scaled with the frame size.
SIZES = {"small": (14.0, 20.0), "large": (28.0, 40.0)}
MOTIONS = ("still", "linear", "circle", "wave")
DIAGONAL_AND_AXIS = tuple((sx, sy) for sx in (-1, 0, 1) for sy in (-1, 0, 1) if sx or sy)
AXIS = tuple(d for d in DIAGONAL_AND_AXIS if 0 in d)


def _regular(n: int, start_deg: float, radii: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """Vertices of a regular (or alternating-radius, for stars) polygon inside the unit circle."""
    k = np.arange(n * len(radii))
    angle = np.deg2rad(start_deg) + 2 * np.pi * k / len(k)
    r = np.resize(np.asarray(radii), len(k))
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


# Unit outlines (image axes: y points down). Squares stay axis-aligned and diamonds are
# elongated, so the two never look alike whatever the small tilt.
_UNIT = {
    "circle": _regular(32, 0.0),
    "square": np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]]),
    "triangle": _regular(3, -90.0),
    "diamond": np.array([[0.0, -1.0], [0.65, 0.0], [0.0, 1.0], [-0.65, 0.0]]),
    "star": _regular(5, -90.0, (1.0, 0.45)),
    "hexagon": _regular(6, 0.0),
}


def scale(height: int, width: int) -> float:
    """Size factor relative to the 128-pixel short side the demo sizes were chosen for."""
    return min(height, width) / 128.0


def outline(shape: str, centre: np.ndarray, radius: float, tilt: float) -> list[float]:
    """COCO polygon [x1, y1, x2, y2, ...] rounded to 2 decimals, as stored in instances.json."""
    c, s = np.cos(tilt), np.sin(tilt)
    points = _UNIT[shape] @ np.array([[c, s], [-s, c]]) * radius + centre
    return [round(float(v), 2) for v in points.reshape(-1)]


def rasterise(polygon: list[float], height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of one polygon, rasterised exactly as pycocotools does for COCO."""
    rles = mask_utils.frPyObjects([polygon], height, width)
    with warnings.catch_warnings():  # pycocotools 2.0.x decode warns under numpy 2; harmless
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode(rles)[:, :, 0].astype(bool)


def area_and_box(polygon: list[float], height: int, width: int) -> tuple[float, list[float]]:
    """Area and [x, y, w, h] box of a polygon, computed by pycocotools as for COCO files."""
    rle = mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))
    return float(mask_utils.area(rle)), [float(v) for v in mask_utils.toBbox(rle)]


def trajectory(
    rng: np.random.Generator,
    motion: str,
    direction: tuple[int, int],
    radius: float,
    frames: int,
    height: int,
    width: int,
) -> np.ndarray:
    """(T, 2) object centres (x, y) for a motion, placed so the object stays inside the frame."""
    t = np.linspace(0.0, 1.0, frames)[:, None]
    size = np.array([width, height], dtype=float)
    short = min(height, width)
    if motion == "still":
        offsets = np.zeros((frames, 2))
    elif motion == "linear":
        offsets = t * np.array(direction) * rng.uniform(0.3, 0.55) * size
    elif motion == "circle":
        turn = rng.choice([-1.0, 1.0]) * 2 * np.pi * np.arange(frames) / frames
        angle = rng.uniform(0, 2 * np.pi) + turn
        offsets = rng.uniform(0.15, 0.25) * short * np.stack([np.cos(angle), np.sin(angle)], 1)
    elif motion == "wave":
        travel = t * np.array(direction) * rng.uniform(0.35, 0.55) * size
        phase = 2 * np.pi * rng.uniform(1.0, 1.5) * t + rng.uniform(0, 2 * np.pi)
        sway = rng.uniform(0.06, 0.1) * short * np.sin(phase) * np.abs(direction[::-1])
        offsets = travel + sway
    else:
        raise ValueError(f"unknown motion {motion!r}")
    low = radius - offsets.min(axis=0)
    high = size - radius - offsets.max(axis=0)
    return offsets + rng.uniform(low, high)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Float (H, W, 3) texture: a smooth low-saturation gradient plus faint stripes and noise."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(angle) + yy * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    start = rng.uniform(65, 140) + rng.uniform(-12, 12, 3)
    end = start + rng.uniform(-30, 30) + rng.uniform(-8, 8, 3)
    image = start + (end - start) * ramp[..., None]
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 20) / max(height, width)
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    image += rng.uniform(2, 6) * stripes[..., None]
    return image + rng.normal(0, 3, (height, width, 1))


def _paint_object(
    canvas: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int],
    centre: np.ndarray,
    light: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Paint `colour` with a soft light ramp and slight noise exactly where `mask` is set."""
    ys, xs = np.nonzero(mask)
    shade = 1.0 + (xs - centre[0]) * light[0] + (ys - centre[1]) * light[1]
    noise = rng.normal(0, 4, (len(ys), 3))
    canvas[ys, xs] = np.asarray(colour, dtype=float) * shade[:, None] + noise


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image to uint8."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def davis_palette() -> list[int]:
    """The DAVIS / PASCAL VOC 256-colour palette used by YouTube-VOS annotation PNGs."""
    palette = []
    for index in range(256):
        rgb, c = [0, 0, 0], index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << (7 - bit)
            c >>= 3
        palette.extend(rgb)
    return palette


def pick(rng: np.random.Generator, options: list | tuple):
    """One element drawn with the generator, as a plain Python value (unlike rng.choice)."""
    return options[int(rng.integers(len(options)))]


@dataclass(frozen=True)
class Look:
    """What an object looks like; two objects with equal looks are indistinguishable."""

    shape: str
    colour: str
    size: str


@dataclass
class Actor:
    """One object: its look, geometry and per-frame centres (T, 2) in pixels (x, y)."""

    look: Look
    radius: float
    tilt: float
    light: np.ndarray
    centres: np.ndarray
    motion: str = "still"
    direction: tuple[int, int] = (0, 0)

    def polygon(self, frame: int) -> list[float]:
        return outline(self.look.shape, self.centres[frame], self.radius, self.tilt)


def sample_looks(rng: np.random.Generator, count: int, twins: bool) -> list[Look]:
    """Random looks; with `twins` the first two are identical, as in ~1 video in 4."""
    looks = [
        Look(pick(rng, SHAPES), pick(rng, list(COLOURS)), pick(rng, list(SIZES)))
        for _ in range(count)
    ]
    if twins:
        looks[1] = looks[0]
    return looks


def _sample_motion(rng: np.random.Generator, avoid: tuple) -> tuple[str, tuple[int, int]]:
    """A (motion, direction) that is none of the pairs in `avoid`."""
    while True:
        motion = str(rng.choice(MOTIONS, p=[0.25, 0.4, 0.15, 0.2]))
        headings = DIAGONAL_AND_AXIS if motion == "linear" else AXIS
        direction = pick(rng, headings) if motion in ("linear", "wave") else (0, 0)
        if (motion, direction) not in avoid:
            return motion, direction


def sample_actor(
    rng: np.random.Generator, look: Look, frames: int, height: int, width: int, avoid: tuple = ()
) -> Actor:
    """An actor that stays inside the frame; `avoid` holds the (motion, direction) pairs its
    twins have taken, so that motion tells identical objects apart."""
    radius = rng.uniform(*SIZES[look.size]) * scale(height, width) / 2
    motion, direction = _sample_motion(rng, avoid) if frames > 1 else ("still", (0, 0))
    centres = trajectory(rng, motion, direction, radius, frames, height, width)
    light_angle = rng.uniform(0, 2 * np.pi)
    light = 0.08 / radius * np.array([np.cos(light_angle), np.sin(light_angle)])
    return Actor(look, radius, rng.uniform(-0.15, 0.15), light, centres, motion, direction)


def sample_apart(rng: np.random.Generator, looks: list[Look], height: int, width: int, tries: int):
    """Still actors that do not touch, so each polygon is exactly its painted region."""
    for _ in range(tries):
        actors = [sample_actor(rng, look, 1, height, width) for look in looks]
        if all(
            np.linalg.norm(a.centres[0] - b.centres[0]) > a.radius + b.radius + 2
            for a, b in itertools.combinations(actors, 2)
        ):
            return actors
    raise RuntimeError(f"could not place {len(looks)} objects apart in {height}x{width}")


def id_maps(actors: list[Actor], frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W) uint8 object ids 1..K; later actors are drawn on top, 0 is background."""
    ids = np.zeros((frames, height, width), dtype=np.uint8)
    for t in range(frames):
        for k, actor in enumerate(actors, start=1):
            ids[t][rasterise(actor.polygon(t), height, width)] = k
    return ids


def paint(rng: np.random.Generator, actors: list[Actor], ids: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: one background per clip, each object painted on its ids."""
    frames, height, width = ids.shape
    base = background(rng, height, width)
    images = []
    for t in range(frames):
        canvas = base + rng.normal(0, 1.5, base.shape)
        for k, actor in enumerate(actors, start=1):
            colour = COLOURS[actor.look.colour]
            _paint_object(canvas, ids[t] == k, colour, actor.centres[t], actor.light, rng)
        images.append(to_uint8(canvas))
    return np.stack(images)
