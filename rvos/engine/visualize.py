"""Pictures people look at: mask overlays on frames, with the sentence as a caption."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

COLORS = ((230, 60, 60), (60, 200, 90), (70, 120, 240), (240, 200, 40), (200, 80, 220))


def overlay(
    frame: Image.Image, mask: np.ndarray, color=COLORS[0], alpha: float = 0.5
) -> Image.Image:
    """Tint the masked pixels of `frame` with `color`."""
    rgb = np.asarray(frame.convert("RGB"), dtype=np.float32)
    tint = np.asarray(color, dtype=np.float32)
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * tint
    return Image.fromarray(rgb.round().astype(np.uint8))


def overlay_strip(
    frames: list[Image.Image],
    predictions: list[np.ndarray],
    targets: list[np.ndarray] | None,
    caption: str,
    count: int = 4,
) -> Image.Image:
    """A row of up to `count` frames (prediction in red), above it the same frames with the
    ground truth (green) when given, and the caption on top."""
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    rows = [[overlay(frames[i], predictions[i], COLORS[0]) for i in picks]]
    if targets is not None:
        rows.append([overlay(frames[i], targets[i], COLORS[1]) for i in picks])
    w, h = frames[0].size
    header = 18
    sheet = Image.new("RGB", (w * len(picks), h * len(rows) + header), "white")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * w, header + r * h))
    ImageDraw.Draw(sheet).text((4, 3), caption, fill=(0, 0, 0))
    return sheet


def sentence_colors(count: int) -> list[tuple[int, int, int]]:
    """Distinct colours for `count` sentences (matplotlib's tab10, repeated beyond ten)."""
    palette = colormaps["tab10"].colors
    return [tuple(round(255 * c) for c in palette[i % len(palette)]) for i in range(count)]


def overlay_legend(
    frame: Image.Image,
    masks: list[np.ndarray],
    texts: list[str],
    colors: list[tuple[int, int, int]],
) -> Image.Image:
    """`frame` with each sentence's mask tinted in its colour, and a legend (a swatch and the
    sentence per line) in the top-left corner."""
    image = frame.convert("RGB")
    for mask, color in zip(masks, colors, strict=True):
        image = overlay(image, mask, color)
    font = ImageFont.load_default(size=max(10, image.height // 28))
    draw = ImageDraw.Draw(image, "RGBA")
    line = round(font.size * 1.3)
    width = max(draw.textlength(t, font=font) for t in texts) + line + 10
    draw.rectangle((0, 0, width, line * len(texts) + 6), fill=(0, 0, 0, 150))
    for i, (text, color) in enumerate(zip(texts, colors, strict=True)):
        top = 3 + i * line
        draw.rectangle((5, top + 2, 5 + line - 6, top + line - 4), fill=color)
        draw.text((line + 4, top), text, fill=(255, 255, 255), font=font)
    return image
