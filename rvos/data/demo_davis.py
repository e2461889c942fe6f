"""Demo Ref-DAVIS17 written in its release layout (FORMATS.md §2), from the demo's shape scenes.

Each sequence is a demo clip whose objects all show in the first frame, since the unsupervised
evaluator counts the objects of a sequence in its first mask. From each of two annotators every
object gets a first-frame expression (appearance or position in frame 0) and a full-video one
(preferably about its motion), written to the four text files in the release's encodings:
UTF-8 for annotator 1, latin-1 for annotator 2, who types the acute accent as an apostrophe
("it´s small") so that the encoding matters. The text files misspell three sequence names as
the release does, and the demo names sequences so that all three occur. Masks are palette PNGs
with void (255) on part of the background ring around each object, as DAVIS marks borders.
Like the other demo datasets, every sequence draws from its own seeded generator and the tree is
moved into place only when complete.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from rvos.data.davis import RENAMES, SPLITS, TEXT_FILES
from rvos.data.demo import PALETTE, Clip, describe, sample_clip, save_jpeg
from rvos.io import atomic_dir

_MAX_TRIES = 200
_VOID = 255
_VOID_SHARE = 0.5  # share of the background pixels touching an object that become void
_ACUTE = "\u00b4"  # latin-1 0xB4, a byte that is never valid UTF-8 on its own
_MISSPELT = {name: typo for typo, name in RENAMES.items()}
# (split, position) of the sequences that carry the names the text files misspell.
_MISSPELT_AT = {("train", 0): "classic-car", ("train", 1): "dogs-scale", ("valid", 0): "motorbike"}
_STREAMS = {"train": 20, "valid": 21}


@dataclass
class _Sequence:
    name: str
    clip: Clip
    texts: list[list[str]]  # per object, one expression per text file (TEXT_FILES order)


def write_davis(
    root: Path,
    *,
    seed: int,
    train_videos: int,
    valid_videos: int,
    frames: int,
    height: int,
    width: int,
    objects_per_video: tuple[int, int] = (1, 4),
    progress: bool = True,
) -> dict:
    """Write a demo Ref-DAVIS17 tree under `root`: DAVIS/ and davis_text_annotations/.

    Frames are named 00000, 00001, ... as in DAVIS. Returns {"sequences", "objects",
    "expressions", "frames"} totals over both image sets.
    """
    splits = {"train": train_videos, "valid": valid_videos}
    sequences: dict[str, list[_Sequence]] = {split: [] for split in splits}
    with (
        atomic_dir(Path(root), "davis_text_annotations") as tmp,
        tqdm(total=sum(splits.values()), desc="demo davis", disable=not progress) as bar,
    ):
        taken: set[str] = set()
        for split, count in splits.items():
            for index in range(count):
                rng = np.random.default_rng([seed, _STREAMS[split], index])
                clip, texts = _sample_sequence(rng, frames, height, width, objects_per_video)
                name = _name(split, index, clip, taken)
                _write_frames(tmp / "DAVIS", name, clip, rng)
                sequences[split].append(_Sequence(name, clip, texts))
                bar.update()
        _write_lists(tmp / "DAVIS", sequences)
        _write_texts(tmp / "davis_text_annotations", sequences)
    objects = sum(len(s.clip.actors) for group in sequences.values() for s in group)
    return {
        "sequences": sum(splits.values()),
        "objects": objects,
        "expressions": objects * len(TEXT_FILES),
        "frames": sum(splits.values()) * frames,
    }


def _sample_sequence(
    rng: np.random.Generator, frames: int, height: int, width: int, objects: tuple[int, int]
) -> tuple[Clip, list[list[str]]]:
    """A clip whose objects all show in frame 0, and its four expressions per object."""
    for _ in range(_MAX_TRIES):
        clip = sample_clip(rng, frames, height, width, objects)
        if all((clip.ids[0] == k).any() for k in range(1, len(clip.actors) + 1)):
            texts = _annotate(rng, clip)
            if texts is not None:
                return clip, texts
    raise RuntimeError(f"could not sample a describable {frames}x{height}x{width} sequence")


def _annotate(rng: np.random.Generator, clip: Clip) -> list[list[str]] | None:
    """Per object [annot1 first, annot1 full, annot2 first, annot2 full]; None if one is lacking.

    First-frame expressions are about appearance and position in frame 0 only.
    """
    first_frame = [dataclasses.replace(a, centres=a.centres[:1]) for a in clip.actors]
    said = [
        describe(rng, first_frame, "refcoco"),
        clip.expressions,
        describe(rng, first_frame, "refcoco"),
        describe(rng, clip.actors, "ytvos"),
    ]
    if not all(all(per_object) for per_object in said):
        return None
    texts = [[_pick(said[a][k], full=a % 2 == 1) for a in range(4)] for k in range(len(said[0]))]
    texts[0][2] += f", it{_ACUTE}s {clip.actors[0].look.size}"
    return texts


def _pick(options: list[tuple], full: bool) -> str:
    """The first expression; for a full-video one, the first about motion if there is one."""
    if full:
        return next((text for kind, text in options if kind == "motion"), options[0][1])
    return options[0][1]


def _name(split: str, index: int, clip: Clip, taken: set[str]) -> str:
    """A DAVIS-like name from the first object's look, unique among the sequences so far."""
    name = _MISSPELT_AT.get((split, index))
    if name is None:
        look = clip.actors[0].look
        base = name = f"{look.colour}-{look.shape}"
        suffix = 2
        while name in taken:
            name, suffix = f"{base}-{suffix}", suffix + 1
    taken.add(name)
    return name


def _void_labels(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    """Object ids with void on a random share of the background pixels touching an object."""
    objects = ids > 0
    ring = ndimage.binary_dilation(objects) & ~objects
    labels = ids.copy()
    labels[ring & (rng.random(ids.shape) < _VOID_SHARE)] = _VOID
    return labels


def _write_frames(davis: Path, name: str, clip: Clip, rng: np.random.Generator) -> None:
    frames_dir = davis / "JPEGImages" / "480p" / name
    masks_dir = davis / "Annotations_unsupervised" / "480p" / name
    frames_dir.mkdir(parents=True)
    masks_dir.mkdir(parents=True)
    for t in range(len(clip.images)):
        save_jpeg(clip.images[t], frames_dir / f"{t:05d}.jpg")
        mask = Image.fromarray(_void_labels(rng, clip.ids[t]))
        mask.putpalette(PALETTE)
        mask.save(masks_dir / f"{t:05d}.png")


def _write_lists(davis: Path, sequences: dict[str, list[_Sequence]]) -> None:
    """ImageSets/2017/{train,val}.txt and davis_semantics.json (category = shape)."""
    sets = davis / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    for split, group in sequences.items():
        names = sorted(s.name for s in group)
        (sets / f"{SPLITS[split]}.txt").write_text("".join(f"{n}\n" for n in names))
    semantics = {
        s.name: {str(k): actor.look.shape for k, actor in enumerate(s.clip.actors, start=1)}
        for group in sequences.values()
        for s in group
    }
    (davis / "davis_semantics.json").write_text(json.dumps(dict(sorted(semantics.items()))))


def _write_texts(folder: Path, sequences: dict[str, list[_Sequence]]) -> None:
    """The four `seq obj_id "expression"` files, sequences in name order, misspellings kept."""
    folder.mkdir()
    ordered = sorted((s for group in sequences.values() for s in group), key=lambda s: s.name)
    for a, (file_name, encoding) in enumerate(TEXT_FILES):
        lines = [
            f'{_MISSPELT.get(s.name, s.name)} {k} "{texts[a]}"\n'
            for s in ordered
            for k, texts in enumerate(s.texts, start=1)
        ]
        (folder / file_name).write_bytes("".join(lines).encode(encoding))
