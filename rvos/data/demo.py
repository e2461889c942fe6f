"""Procedural demo datasets written in the real Ref-YouTube-VOS and RefCOCO on-disk formats.

The files follow FORMATS.md sections 1 and 6 exactly, so the readers of the real datasets serve
the demo unchanged and the whole pipeline runs end to end without downloads. Every video and
image draws from its own generator seeded by (seed, stream, index): the same arguments give
byte-identical files whatever the order of generation. Each dataset is written into a temporary
directory beside `root` and moved into place only when complete.
"""

from __future__ import annotations

import itertools
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from rvos.data import demo_shapes as shapes
from rvos.data.demo_shapes import Actor, Look
from rvos.io import atomic_dir

# Written beside each demo dataset: the kind of every expression, for per-kind J&F.
KINDS_FILE = "demo_expression_kinds.json"

_ATTRS = ("size", "colour", "shape")
_MAX_TRIES = 200
_JPEG_QUALITY = 90
FRAME_STRIDE = 5
PALETTE = shapes.davis_palette()
# (axis, sign): axis 0 is x, 1 is y; sign -1 means towards smaller coordinates.
_SIDES = {(0, -1): "left", (0, 1): "right", (1, -1): "top", (1, 1): "bottom"}
_MOST = {(0, -1): "leftmost", (0, 1): "rightmost", (1, -1): "topmost", (1, 1): "lowest"}
_RELATIONS = {
    (0, -1): "to the left of",
    (0, 1): "to the right of",
    (1, -1): "above",
    (1, 1): "below",
}
# Which clue kinds each expression style may use, and whether it always names the full look.
_STYLES = {
    "ytvos": (("appearance", "motion", "position"), False),
    "refcoco": (("appearance", "position"), False),
    "refcoco+": (("appearance",), False),  # RefCOCO+ forbids location words
    "refcocog": (("appearance", "position"), True),  # longer, fully specified sentences
}
_REFER_SETS = (("refcoco", "unc"), ("refcoco+", "unc"), ("refcocog", "umd"))


@dataclass
class Clue:
    """What an expression asserts: a (partial) look plus an optional motion or position."""

    kind: str
    noun: dict[str, str]
    motion: tuple = ()  # ("still",) | ("circle",) | ("dir", sx, sy) | ("wave", sx, sy)
    place: tuple = ()  # ("most", axis, sign) | ("rel", axis, sign, anchor_index)
    anchor_noun: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- expressions and uniqueness


def _nouns(look: Look, full: bool) -> list[dict[str, str]]:
    """Every partial description of a look (or only the complete one)."""
    keeps = [(True,) * 3] if full else itertools.product((False, True), repeat=3)
    return [{a: getattr(look, a) for a, k in zip(_ATTRS, keep, strict=True) if k} for keep in keeps]


def _named(noun: dict[str, str], look: Look) -> bool:
    return all(getattr(look, a) == v for a, v in noun.items())


def _moves(key: tuple, actor: Actor) -> bool:
    """Whether a motion phrase is true of an actor; a zero heading component means 'any'."""
    name, *heading = key
    if name in ("still", "circle"):
        return actor.motion == name
    if actor.motion not in ("linear", "wave") or (name == "wave" and actor.motion != "wave"):
        return False
    return all(h in (0, d) for h, d in zip(heading, actor.direction, strict=True)) and (
        name == "dir" or tuple(heading) == actor.direction
    )


def _placed(clue: Clue, i: int, actors: list[Actor], strict: bool) -> bool:
    """Position relations on centres: strict = with a margin in every frame, loose = any frame."""
    kind, axis, sign, *anchor = clue.place
    others = [j for j, a in enumerate(actors) if j != i and _named(clue.noun, a.look)]
    if kind == "rel":
        others = anchor[:1]
        if i == anchor[0]:
            return False
    if not others:
        return False
    target = actors[i]
    ahead = [
        sign * (target.centres[:, axis] - actors[j].centres[:, axis])
        >= (0.5 * (target.radius + actors[j].radius) if strict else 0.0)
        for j in others
    ]
    per_frame = np.all(ahead, axis=0)
    return bool(per_frame.all() if strict else per_frame.any())


def _fits(clue: Clue, i: int, actors: list[Actor], strict: bool) -> bool:
    actor = actors[i]
    if not _named(clue.noun, actor.look) or (clue.motion and not _moves(clue.motion, actor)):
        return False
    return _placed(clue, i, actors, strict) if clue.place else True


def _unique(clue: Clue, i: int, actors: list[Actor]) -> bool:
    """True only if the clue holds firmly for actor i and not even loosely for any other."""
    return _fits(clue, i, actors, True) and not any(
        _fits(clue, j, actors, False) for j in range(len(actors)) if j != i
    )


def _motion_keys(actor: Actor) -> list[tuple]:
    if actor.motion in ("still", "circle"):
        return [(actor.motion,)]
    sx, sy = actor.direction
    keys = [("dir", sx, sy)] + ([("dir", sx, 0), ("dir", 0, sy)] if sx and sy else [])
    return keys + ([("wave", sx, sy)] if actor.motion == "wave" else [])


def _anchors(actors: list[Actor], full: bool) -> list[tuple[int, dict[str, str]]]:
    """Objects that relations can refer to: those with a unique look, and its shortest noun."""
    anchors = []
    for a, actor in enumerate(actors):
        named = [n for n in _nouns(actor.look, full) if _unique(Clue("appearance", n), a, actors)]
        if named:
            anchors.append((a, min(named, key=len)))
    return anchors


def _clues(i: int, actors: list[Actor], style: str, anchors: list[tuple]) -> Iterator[Clue]:
    """Every candidate clue about actor i; uniqueness is checked by the caller."""
    kinds, full = _STYLES[style]
    for noun in _nouns(actors[i].look, full):
        if "appearance" in kinds:
            yield Clue("appearance", noun)
        if "motion" in kinds:
            yield from (Clue("motion", noun, motion=key) for key in _motion_keys(actors[i]))
        if "position" in kinds:
            for side in _SIDES:
                yield Clue("position", noun, place=("most", *side))
                for a, anchor_noun in anchors:
                    if a != i:
                        place = ("rel", *side, a)
                        yield Clue("position", noun, place=place, anchor_noun=anchor_noun)


def _noun_text(noun: dict[str, str]) -> str:
    words = [noun[a] for a in ("size", "colour") if a in noun]
    return " ".join([*words, noun.get("shape", "object")])


def _say(rng: np.random.Generator, clue: Clue, style: str) -> str:
    """Word a clue in the manner of the dataset it is written for."""
    text = _phrase(rng, clue, style)
    if style in ("refcoco", "refcoco+") and rng.random() < 0.5:
        return text.split(" ", 1)[1]  # short RefCOCO expressions often drop the article
    return text


def _phrase(rng: np.random.Generator, clue: Clue, style: str) -> str:
    noun = _noun_text(clue.noun)
    if clue.kind == "appearance":
        if style == "refcocog":
            where = shapes.pick(rng, ["in the picture", "in the image"])
            return f"{shapes.pick(rng, ['a', 'the'])} {noun} {where}"
        return f"{shapes.pick(rng, ['the', 'the', 'an' if noun[0] in 'aeiou' else 'a'])} {noun}"
    if clue.motion:
        return f"the {noun} {_motion_text(rng, clue.motion)}"
    kind, *side = clue.place[:3]
    side = tuple(side)
    if kind == "rel":
        link = " that is" if style == "refcocog" else ""
        return f"the {noun}{link} {_RELATIONS[side]} the {_noun_text(clue.anchor_noun)}"
    if style == "refcocog":
        return f"the {noun} that is closest to the {_SIDES[side]} of the picture"
    if rng.random() < 0.5:
        return f"the {_MOST[side]} {noun}"
    return f"the {noun} {'on the' if side[0] == 0 else 'at the'} {_SIDES[side]}"


def _motion_text(rng: np.random.Generator, key: tuple) -> str:
    name, *heading = key
    if name == "still":
        return shapes.pick(rng, ["that stays still", "that does not move", "standing still"])
    if name == "circle":
        return shapes.pick(rng, ["moving in a circle", "going round in a circle"])
    sx, sy = heading
    vertical = {-1: ["up"], 0: [], 1: ["down"]}[sy]
    horizontal = {-1: ["to the left"], 0: [], 1: ["to the right"]}[sx]
    verb = shapes.pick(rng, ["moving", "going", "heading"])
    wave = " in a wavy line" if name == "wave" else ""
    return f"{verb} {' and '.join(vertical + horizontal)}{wave}"


def _scuff(rng: np.random.Generator, text: str) -> str:
    """Rarely capitalise or double a space, as in real data; loaders must normalise both."""
    draw = rng.random()
    if draw < 0.03:
        return text[0].upper() + text[1:]
    return text.replace(" ", "  ", 1) if draw < 0.05 else text


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def describe(rng: np.random.Generator, actors: list[Actor], style: str) -> list[list[tuple]]:
    """Per actor, up to 3 (kind, text) expressions, each true of that actor only.

    Kinds are taken in turn so an actor gets varied expressions; twins end up with motion or
    position expressions because no appearance clue is unique for them.
    """
    said, result, anchors = set(), [], _anchors(actors, _STYLES[style][1])
    for i in range(len(actors)):
        pools: dict[str, list[Clue]] = {}
        for clue in _clues(i, actors, style, anchors):
            if _unique(clue, i, actors):
                pools.setdefault(clue.kind, []).append(clue)
        wanted, chosen = int(rng.integers(1, 4)), []
        order = [str(k) for k in rng.permutation(sorted(pools))]
        while len(chosen) < wanted and any(pools.values()):
            for kind in [k for k in order if pools[k]][: wanted - len(chosen)]:
                text = _say(rng, pools[kind].pop(int(rng.integers(len(pools[kind])))), style)
                if _normal(text) not in said:
                    said.add(_normal(text))
                    chosen.append((kind, _scuff(rng, text)))
        result.append(chosen)
    return result


@dataclass
class Clip:
    """One sampled video: (T, H, W) object ids, (T, H, W, 3) frames, expressions per object."""

    vid: str
    actors: list[Actor]
    ids: np.ndarray
    images: np.ndarray
    expressions: list[list[tuple]]


def sample_clip(
    rng: np.random.Generator, frames: int, height: int, width: int, objects: tuple[int, int]
) -> Clip:
    """A video whose objects are each visible in at least half the frames and each described."""
    vid = rng.bytes(5).hex()
    for _ in range(_MAX_TRIES):
        count = int(rng.integers(objects[0], objects[1] + 1))
        twins = count > 1 and rng.random() < 0.3  # with chance repeats, ~1 video in 4
        actors = []
        for k, look in enumerate(shapes.sample_looks(rng, count, twins)):
            avoid = ((actors[0].motion, actors[0].direction),) if twins and k == 1 else ()
            actors.append(shapes.sample_actor(rng, look, frames, height, width, avoid))
        ids = shapes.id_maps(actors, frames, height, width)
        visible = [(ids == k).any(axis=(1, 2)).sum() for k in range(1, count + 1)]
        if min(visible) * 2 < frames:
            continue
        expressions = describe(rng, actors, "ytvos")
        if all(expressions):
            return Clip(vid, actors, ids, shapes.paint(rng, actors, ids), expressions)
    raise RuntimeError(f"could not sample a describable {frames}x{height}x{width} clip")


# ------------------------------------------------------------------------------- writing


def save_jpeg(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image).save(path, quality=_JPEG_QUALITY)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _write_clip(split_dir: Path, clip: Clip, names: list[str], masks: bool) -> None:
    (split_dir / "JPEGImages" / clip.vid).mkdir(parents=True)
    if masks:
        (split_dir / "Annotations" / clip.vid).mkdir(parents=True)
    for t, name in enumerate(names):
        save_jpeg(clip.images[t], split_dir / "JPEGImages" / clip.vid / f"{name}.jpg")
        if masks:  # palette PNG, pixel = object id
            ids = Image.fromarray(clip.ids[t])
            ids.putpalette(PALETTE)
            ids.save(split_dir / "Annotations" / clip.vid / f"{name}.png")


def write_ytvos(
    root: Path,
    *,
    seed: int,
    train_videos: int,
    valid_videos: int,
    test_videos: int,
    frames: int,
    height: int,
    width: int,
    objects_per_video: tuple[int, int] = (1, 4),
    progress: bool = True,
) -> dict:
    """Write a demo Ref-YouTube-VOS tree under `root` (FORMATS.md section 1).

    Each video holds between objects_per_video[0] and [1] objects (inclusive).
    Unlike the real data, valid expressions carry `obj_id` and valid/Annotations exists, so the
    demo can be scored locally; test videos have neither. `demo_expression_kinds.json` maps
    {vid: {exp_id: "appearance" | "motion" | "position"}} for train and valid.
    Returns {"videos", "expressions", "frames", "objects"} totals over all splits.
    """
    names = [f"{t * FRAME_STRIDE:05d}" for t in range(frames)]
    splits = {"train": train_videos, "valid": valid_videos, "test": test_videos}
    metas: dict[str, dict] = {split: {} for split in splits}
    objects, kinds, n_objects = {}, {}, 0
    with (
        atomic_dir(Path(root), "meta_expressions") as tmp,
        tqdm(total=sum(splits.values()), desc="demo ytvos", disable=not progress) as bar,
    ):
        for stream, (split, count) in enumerate(splits.items()):
            for index in range(count):
                rng = np.random.default_rng([seed, stream, index])
                clip = sample_clip(rng, frames, height, width, objects_per_video)
                if any(clip.vid in meta for meta in metas.values()):
                    raise RuntimeError(f"video id {clip.vid} drawn twice; choose another seed")
                _write_clip(tmp / split, clip, names, masks=split != "test")
                exps, exp_kinds = _expressions(clip, with_obj_id=split != "test")
                metas[split][clip.vid] = {"expressions": exps, "frames": names}
                if split != "test":
                    kinds[clip.vid] = exp_kinds
                if split == "train":
                    objects[clip.vid] = {"objects": _train_objects(clip, names)}
                n_objects += len(clip.actors)
                bar.update()
        _write_json(tmp / "train" / "meta.json", {"videos": objects})
        valid = {**metas["valid"], **metas["test"]}  # as the real 507 = 202 valid + 305 test
        for split, videos in (("train", metas["train"]), ("valid", valid), ("test", metas["test"])):
            path = tmp / "meta_expressions" / split / "meta_expressions.json"
            _write_json(path, {"videos": videos})
        _write_json(tmp / KINDS_FILE, kinds)
    videos = [video for meta in metas.values() for video in meta.values()]
    return {
        "videos": len(videos),
        "expressions": sum(len(video["expressions"]) for video in videos),
        "frames": len(videos) * frames,
        "objects": n_objects,
    }


def _expressions(clip: Clip, with_obj_id: bool) -> tuple[dict, dict]:
    """meta_expressions entries {exp_id: {"exp", "obj_id"}} and their kinds {exp_id: kind}."""
    exps, kinds = {}, {}
    for obj, said in enumerate(clip.expressions, start=1):
        for kind, text in said:
            exp_id = str(len(exps))
            exps[exp_id] = {"exp": text, "obj_id": str(obj)} if with_obj_id else {"exp": text}
            kinds[exp_id] = kind
    return exps, kinds


def _train_objects(clip: Clip, names: list[str]) -> dict:
    """meta.json objects: category and the frames where the object is visible."""
    return {
        str(k): {
            "category": actor.look.shape,
            "frames": [n for t, n in enumerate(names) if (clip.ids[t] == k).any()],
        }
        for k, actor in enumerate(clip.actors, start=1)
    }


# ------------------------------------------------------------------------------ RefCOCO


@dataclass
class _Still:
    """One RefCOCO image: its COCO entry, annotations, split per splitBy and sentences per set."""

    entry: dict
    annotations: list[dict]
    splits: dict[str, str]
    sentences: dict[str, list[list[tuple]]]


def _sample_image(rng: np.random.Generator, index: int, height: int, width: int) -> tuple:
    """(pixels, _Still) of one still image."""
    image_id = 7 * index + 1 + int(rng.integers(7))  # sparse like COCO ids, unique by index
    looks = shapes.sample_looks(rng, int(rng.integers(2, 6)), twins=rng.random() < 0.3)
    actors = shapes.sample_apart(rng, looks, height, width, _MAX_TRIES)
    pixels = shapes.paint(rng, actors, shapes.id_maps(actors, 1, height, width))[0]
    name = f"COCO_train2014_{image_id:012d}.jpg"
    entry = {"id": image_id, "file_name": name, "height": height, "width": width}
    annotations = [_annotation(actor, image_id, k, height, width) for k, actor in enumerate(actors)]
    splits = {
        "unc": str(rng.choice(["train", "val", "testA", "testB"], p=[0.7, 0.1, 0.1, 0.1])),
        "umd": str(rng.choice(["train", "val", "test"], p=[0.8, 0.1, 0.1])),
    }
    sentences = {name: describe(rng, actors, name) for name, _ in _REFER_SETS}
    return pixels, _Still(entry, annotations, splits, sentences)


def _annotation(actor: Actor, image_id: int, k: int, height: int, width: int) -> dict:
    """COCO annotation of the k-th object; area and bbox computed by pycocotools."""
    polygon = actor.polygon(0)
    area, bbox = shapes.area_and_box(polygon, height, width)
    return {
        "id": image_id * 10 + k + 1,
        "image_id": image_id,
        "category_id": shapes.SHAPES.index(actor.look.shape) + 1,
        "segmentation": [polygon],
        "area": area,
        "bbox": bbox,
        "iscrowd": 0,
    }


def _refs(stills: list[_Still], name: str, split_by: str) -> list[dict]:
    """The refs pickle content of one set: one ref per described object, ids counted from 0."""
    refs, sent_id = [], 0
    for still in stills:
        for k, (ann, said) in enumerate(zip(still.annotations, still.sentences[name], strict=True)):
            if not said:
                continue
            sents = []
            for _, raw in said:
                sent = _normal(raw)
                sents.append({"tokens": sent.split(), "raw": raw, "sent": sent, "sent_id": sent_id})
                sent_id += 1
            refs.append(
                {
                    "ref_id": len(refs),
                    "ann_id": ann["id"],
                    "image_id": still.entry["id"],
                    "category_id": ann["category_id"],
                    "split": still.splits[split_by],
                    "sent_ids": [s["sent_id"] for s in sents],
                    "file_name": still.entry["file_name"].replace(".jpg", f"_{k + 1}.jpg"),
                    "sentences": sents,
                }
            )
    return refs


def write_refcoco(
    root: Path, *, seed: int, images: int, height: int, width: int, progress: bool = True
) -> dict:
    """Write demo RefCOCO, RefCOCO+ and RefCOCOg under `root` (FORMATS.md section 6).

    The three sets share the images and instances.json; RefCOCO+ uses appearance words only and
    RefCOCOg longer, fully specified sentences. Objects without a unique sentence in a set get
    no ref there. Returns {"images", "annotations", "refs", "sentences"}, refs and sentences
    summed over the three sets.
    """
    stills = []
    with atomic_dir(Path(root), "refcoco") as tmp:
        (tmp / "train2014").mkdir()
        for index in tqdm(range(images), desc="demo refcoco", disable=not progress):
            rng = np.random.default_rng([seed, 3, index])
            pixels, still = _sample_image(rng, index, height, width)
            save_jpeg(pixels, tmp / "train2014" / still.entry["file_name"])
            stills.append(still)
        categories = [
            {"id": c, "name": shape, "supercategory": "shape"}
            for c, shape in enumerate(shapes.SHAPES, start=1)
        ]
        annotations = [ann for still in stills for ann in still.annotations]
        instances = {
            "images": [still.entry for still in stills],
            "categories": categories,
            "annotations": annotations,
        }
        counts = {"images": images, "annotations": len(annotations), "refs": 0, "sentences": 0}
        for name, split_by in _REFER_SETS:
            refs = _refs(stills, name, split_by)
            _write_json(tmp / name / "instances.json", instances)
            with open(tmp / name / f"refs({split_by}).p", "wb") as f:
                pickle.dump(refs, f, protocol=2)
            counts["refs"] += len(refs)
            counts["sentences"] += sum(len(ref["sentences"]) for ref in refs)
    return counts
