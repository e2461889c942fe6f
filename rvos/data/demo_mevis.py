"""Procedural demo MeViS written in its release layout (FORMATS.md §3).

The scenes are moving shapes, each with a look and a motion, as in rvos.data.demo; as in MeViS,
many hold a crowd of identical objects that only their motions tell apart. Some movers are
pushed along their heading until they leave the view, or come into it, so that the mask lists
hold nulls as the real mask_dict.json does. The expressions are about motion: many refer to
several objects at once ("the two squares moving to the left") and some name no appearance at
all ("the object going round in a circle"); those always refer to one object, which a model
that sees frames one at a time cannot single out. Each expression is a predicate (a partial
look and/or a motion) and its target is exactly the set of objects it is true of, so the words
and the union mask always agree.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from rvos.data import demo_shapes as shapes
from rvos.data.demo import KINDS_FILE, save_jpeg
from rvos.data.demo_shapes import Actor, Look
from rvos.io import atomic_dir, write_json

SPLITS = ("train", "valid_u", "valid")
_FIRST_STREAM = 10  # generator streams 10-12, apart from those of the other demo datasets
_ATTRS = ("size", "colour", "shape")
_MAX_TRIES = 50
_CROSS_SHARE = 0.5  # share of linear and wave movers that enter or leave the view
_CROWD_SHARE = 0.6  # share of videos with 2-3 identical objects
_GROUPS, _MOTION_ONLY = 2, 2  # at most this many of each per video
_MOTION_SHARE = 0.8  # how often a target that motion can describe is described by motion
_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}
# (singular, plural) wordings of the motions that take no heading.
_PHRASES = {
    "still": (
        ("that stays still", "that stay still"),
        ("that does not move", "that do not move"),
        ("standing still", "standing still"),
    ),
    "moving": (("that is moving", "that are moving"), ("in motion", "in motion")),
    "circle": (
        ("moving in a circle", "moving in a circle"),
        ("going round in a circle", "going round in a circle"),
    ),
    "enters": (
        ("entering the frame", "entering the frame"),
        ("that comes into view", "that come into view"),
    ),
    "leaves": (
        ("leaving the frame", "leaving the frame"),
        ("that goes out of view", "that go out of view"),
    ),
}


@dataclass(frozen=True)
class Facts:
    """What expressions may say about one object: its look and every motion key true of it.

    Motion keys: ("still",), ("moving",), ("circle",), ("dir", sx, sy) with 0 meaning any
    component, ("wave", sx, sy), ("enters",) and ("leaves",).
    """

    look: Look
    motions: frozenset


@dataclass(frozen=True)
class Predicate:
    noun: tuple[tuple[str, str], ...]  # (attribute, value) pairs of a partial look
    motion: tuple = ()  # one motion key, or () for appearance alone

    def holds(self, facts: Facts) -> bool:
        named = all(getattr(facts.look, attr) == value for attr, value in self.noun)
        return named and (not self.motion or self.motion in facts.motions)

    @property
    def kind(self) -> str:
        if not self.motion:
            return "appearance"
        return "motion" if self.noun else "motion_only"


# ------------------------------------------------------------------------------- scenes


@dataclass
class Scene:
    """One video: actors, (T, H, W) visible object ids 1..K, (T, H, W, 3) frames, facts."""

    vid: str
    actors: list[Actor]
    ids: np.ndarray
    images: np.ndarray
    facts: list[Facts]


def in_view(actor: Actor, frames: int, height: int, width: int) -> np.ndarray:
    """(T,) bool: whether any part of the object lies inside the frame (occlusion ignored)."""
    return np.array(
        [shapes.rasterise(actor.polygon(t), height, width).any() for t in range(frames)]
    )


def object_facts(actor: Actor, seen: np.ndarray) -> Facts:
    """The facts of an actor whose in-view flags per frame are `seen`."""
    keys = {("still",)} if actor.motion == "still" else {("moving",)}
    if actor.motion == "circle":
        keys.add(("circle",))
    if actor.motion in ("linear", "wave"):
        sx, sy = actor.direction
        keys |= {("dir", sx, sy), ("dir", sx, 0), ("dir", 0, sy)} - {("dir", 0, 0)}
        if actor.motion == "wave":
            keys.add(("wave", sx, sy))
    if seen[-1] and not seen[0]:
        keys.add(("enters",))
    if seen[0] and not seen[-1]:
        keys.add(("leaves",))
    return Facts(actor.look, frozenset(keys))


def _cross_border(
    rng: np.random.Generator, actor: Actor, frames: int, height: int, width: int
) -> Actor:
    """The mover pushed along its heading so that it leaves the view in the second half of the
    clip, or comes into it in the first half; unchanged if it would then be in view in fewer
    than half of the frames. The push grows (or fades) linearly, so the heading still holds."""
    if actor.motion not in ("linear", "wave") or rng.random() >= _CROSS_SHARE:
        return actor
    leaves = bool(rng.random() < 0.5)
    ramp = np.linspace(0.0, 1.0, frames) - (0.0 if leaves else 1.0)
    # The first frame out of view when leaving, the last one when entering.
    edge = int(rng.integers((frames + 1) // 2, frames) if leaves else rng.integers(frames // 2))
    heading = np.asarray(actor.direction, dtype=float)
    outward = heading * np.sign(ramp[edge])
    reach = 1.2 * actor.radius + 1  # past the farthest corner of any outline (squares: 1.13)
    centre, size = actor.centres[edge], (width, height)
    needs = [
        size[axis] + reach - centre[axis] if outward[axis] > 0 else centre[axis] + reach
        for axis in (0, 1)
        if outward[axis]
    ]
    push = min(needs) / abs(ramp[edge])
    moved = dataclasses.replace(actor, centres=actor.centres + heading * push * ramp[:, None])
    return moved if in_view(moved, frames, height, width).sum() * 2 >= frames else actor


def sample_looks(rng: np.random.Generator, count: int) -> list[Look]:
    """Random looks; in a share of videos the first 2-3 are one look (a crowd)."""
    looks = shapes.sample_looks(rng, count, twins=False)
    if count > 1 and rng.random() < _CROWD_SHARE:
        crowd = int(rng.integers(2, min(count, 3) + 1))
        looks[1:crowd] = [looks[0]] * (crowd - 1)
    return looks


def sample_actors(
    rng: np.random.Generator, looks: list[Look], frames: int, height: int, width: int
) -> list[Actor]:
    """One actor per look; identical objects never share a (motion, direction)."""
    actors: list[Actor] = []
    for look in looks:
        taken = tuple((a.motion, a.direction) for a in actors if a.look == look)
        actor = shapes.sample_actor(rng, look, frames, height, width, avoid=taken)
        actors.append(_cross_border(rng, actor, frames, height, width))
    return actors


def sample_scene(
    rng: np.random.Generator, frames: int, height: int, width: int, objects: tuple[int, int]
) -> Scene:
    """A demo clip whose movers may cross the border; every object visible in a third of it."""
    vid = rng.bytes(5).hex()
    for _ in range(_MAX_TRIES):
        looks = sample_looks(rng, int(rng.integers(objects[0], objects[1] + 1)))
        actors = sample_actors(rng, looks, frames, height, width)
        ids = shapes.id_maps(actors, frames, height, width)
        visible = [(ids == k).any(axis=(1, 2)).sum() for k in range(1, len(actors) + 1)]
        if min(visible) * 3 >= frames:
            facts = [object_facts(a, in_view(a, frames, height, width)) for a in actors]
            return Scene(vid, actors, ids, shapes.paint(rng, actors, ids), facts)
    raise RuntimeError(f"could not sample a {frames}x{height}x{width} MeViS clip")


# -------------------------------------------------------------------------- expressions


def _predicates(facts: list[Facts]) -> list[Predicate]:
    """Every predicate true of at least one object, in a fixed order."""
    found = set()
    for fact in facts:
        for keep in itertools.product((False, True), repeat=3):
            noun = tuple((a, getattr(fact.look, a)) for a, k in zip(_ATTRS, keep, strict=True) if k)
            found |= {Predicate(noun, m) for m in [(), *fact.motions] if noun or m}
    return sorted(found, key=lambda p: (p.noun, p.motion))


def _draw(rng: np.random.Generator, items: list, count: int) -> list:
    """Up to `count` distinct items, in their original order."""
    return [items[i] for i in sorted(rng.permutation(len(items))[:count])]


def _pick(rng: np.random.Generator, predicates: list[Predicate]) -> Predicate:
    """One of the predicates of a target, mostly one about motion when there is one."""
    moving = [p for p in predicates if p.motion]
    return shapes.pick(rng, moving if moving and rng.random() < _MOTION_SHARE else predicates)


def _choose(rng: np.random.Generator, facts: list[Facts]) -> list[tuple[Predicate, tuple]]:
    """(predicate, target object indices) pairs: a few groups (named by their look), a few
    motion-only expressions about one object each, and an expression of its own for every
    object that has one."""
    by_target: dict[tuple[int, ...], list[Predicate]] = {}
    for predicate in _predicates(facts):
        target = tuple(i for i, fact in enumerate(facts) if predicate.holds(fact))
        by_target.setdefault(target, []).append(predicate)
    named = {t: [p for p in ps if p.noun] for t, ps in by_target.items() if len(t) > 1}
    chosen: dict[tuple[int, ...], Predicate] = {}
    for target in _draw(rng, [t for t, ps in named.items() if ps], _GROUPS):
        chosen[target] = _pick(rng, named[target])
    unnamed = {(i,): [p for p in by_target.get((i,), []) if not p.noun] for i in range(len(facts))}
    for target in _draw(rng, [t for t, ps in unnamed.items() if ps], _MOTION_ONLY):
        chosen[target] = shapes.pick(rng, unnamed[target])
    for i in range(len(facts)):
        # Its full look always names a target, so a group with a named predicate is at hand.
        own = [t for t in by_target if i in t and (len(t) == 1 or named[t])]
        if (i,) in by_target or not any(i in t for t in chosen):
            target = min(own, key=len)
            chosen.setdefault(target, _pick(rng, named.get(target) or by_target[target]))
    return [(predicate, target) for target, predicate in chosen.items()]


def _noun_words(noun: dict[str, str], plural: bool) -> str:
    words = [noun[a] for a in ("size", "colour") if a in noun]
    return " ".join([*words, noun.get("shape", "object") + ("s" if plural else "")])


def _motion_words(rng: np.random.Generator, key: tuple, plural: bool) -> str:
    name, *heading = key
    if name in _PHRASES:
        return shapes.pick(rng, _PHRASES[name])[int(plural)]
    sx, sy = heading
    vertical = {-1: ["up"], 0: [], 1: ["down"]}[sy]
    horizontal = {-1: ["to the left"], 0: [], 1: ["to the right"]}[sx]
    verb = shapes.pick(rng, ["moving", "going", "heading"])
    wave = " in a wavy line" if name == "wave" else ""
    return f"{verb} {' and '.join(vertical + horizontal)}{wave}"


def _say(rng: np.random.Generator, predicate: Predicate, count: int) -> str:
    plural = count > 1
    article = "the"
    if plural and count in _NUMBERS and rng.random() < 0.5:
        article = f"the {_NUMBERS[count]}"
    words = [article, _noun_words(dict(predicate.noun), plural)]
    if predicate.motion:
        words.append(_motion_words(rng, predicate.motion, plural))
    return " ".join(words)


def group_expressions(rng: np.random.Generator, facts: list[Facts]) -> list[tuple]:
    """(kind, text, target object indices) per expression; the text is true of exactly the
    target set. kind is "appearance", "motion" or "motion_only" (no appearance word)."""
    said = []
    for predicate, target in _choose(rng, facts):
        said.append((predicate.kind, _say(rng, predicate, len(target)), target))
    return said


# ------------------------------------------------------------------------------ writing


def _track(masks: np.ndarray) -> list[dict | None]:
    """Per frame a COCO compressed RLE with str counts, or None where the mask is empty."""
    track = []
    for mask in masks:
        if not mask.any():
            track.append(None)
            continue
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        track.append({"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()})
    return track


def _write_frames(folder: Path, images: np.ndarray, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for image, name in zip(images, names, strict=True):
        save_jpeg(image, folder / f"{name}.jpg")


@dataclass
class _Video:
    """What the split files need of one written video: its mask track per object and sayings."""

    vid: str
    tracks: list[list[dict | None]]
    said: list[tuple]


def _write_split(folder: Path, videos: list[_Video], names: list[str], with_masks: bool) -> dict:
    """meta_expressions.json (and mask_dict.json with masks); the kinds {vid: {exp_id: kind}}.

    Objects are numbered per video from 0 (obj_id) and per split from 0 (anno_id).
    """
    meta, mask_dict, kinds = {}, {}, {}
    for video in videos:
        anno_ids = [len(mask_dict) + k for k in range(len(video.tracks))]
        mask_dict.update({str(a): track for a, track in zip(anno_ids, video.tracks, strict=True)})
        expressions = {}
        for exp_id, (_, text, target) in enumerate(video.said):
            ids = {"obj_id": list(target), "anno_id": [anno_ids[i] for i in target]}
            expressions[str(exp_id)] = {"exp": text, **(ids if with_masks else {})}
        meta[video.vid] = {"expressions": expressions, "frames": names}
        kinds[video.vid] = {str(exp_id): kind for exp_id, (kind, _, _) in enumerate(video.said)}
    write_json(folder / "meta_expressions.json", {"videos": meta}, indent=None)
    if with_masks:
        write_json(folder / "mask_dict.json", mask_dict, indent=None)
    return kinds


def _counts(videos: list[_Video], frames: int, with_masks: bool) -> dict:
    said = [t for video in videos for _, _, t in video.said]
    tracks = [track for video in videos for track in video.tracks]
    return {
        "videos": len(videos),
        "expressions": len(said),
        "frames": len(videos) * frames,
        "objects": len(tracks),
        "multi_object_expressions": sum(len(t) > 1 for t in said),
        "absent_masks": sum(m is None for t in tracks for m in t) if with_masks else 0,
    }


def write_mevis(
    root: Path,
    *,
    seed: int,
    train_videos: int,
    valid_u_videos: int,
    valid_videos: int,
    frames: int,
    height: int,
    width: int,
    objects_per_video: tuple[int, int] = (2, 5),
    progress: bool = True,
) -> dict:
    """Write a demo MeViS tree under `root` (FORMATS.md section 3).

    Each split holds JPEGImages/ and meta_expressions.json; train and valid_u also hold
    mask_dict.json and their expressions list obj_id and anno_id; valid has neither, as
    released. `demo_expression_kinds.json` maps {split: {vid: {exp_id: kind}}}. Returns totals
    over all splits: videos, expressions, frames, objects, multi_object_expressions and
    absent_masks (the null entries of the mask_dict files).
    """
    names = [f"{t:05d}" for t in range(frames)]
    sizes = {"train": train_videos, "valid_u": valid_u_videos, "valid": valid_videos}
    totals: dict[str, int] = {}
    kinds: dict[str, dict] = {}
    seen: set[str] = set()
    with (
        atomic_dir(Path(root), KINDS_FILE) as tmp,
        tqdm(total=sum(sizes.values()), desc="demo mevis", disable=not progress) as bar,
    ):
        for stream, split in enumerate(SPLITS, start=_FIRST_STREAM):
            videos = []
            for index in range(sizes[split]):
                rng = np.random.default_rng([seed, stream, index])
                scene = sample_scene(rng, frames, height, width, objects_per_video)
                if scene.vid in seen:
                    raise RuntimeError(f"video id {scene.vid} drawn twice; choose another seed")
                seen.add(scene.vid)
                _write_frames(tmp / split / "JPEGImages" / scene.vid, scene.images, names)
                tracks = [_track(scene.ids == k) for k in range(1, len(scene.actors) + 1)]
                videos.append(_Video(scene.vid, tracks, group_expressions(rng, scene.facts)))
                bar.update()
            with_masks = split != "valid"
            kinds[split] = _write_split(tmp / split, videos, names, with_masks)
            for key, value in _counts(videos, frames, with_masks).items():
                totals[key] = totals.get(key, 0) + value
        write_json(tmp / KINDS_FILE, kinds, indent=None)
    return totals
