"""`rvos predict` end to end on small generated videos, online windows, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from rvos.cli import main
from rvos.config import BackboneConfig, ModelConfig, ReferFormerConfig, TextEncoderConfig, to_dict
from rvos.engine.checkpoint import save_checkpoint
from rvos.engine.online import OnlineSegmenter, choose_queries
from rvos.engine.predict import GifWriter
from rvos.models.build import Method, build_model
from rvos.models.postprocess import Candidates

HEIGHT, WIDTH, FRAMES = 50, 70, 9  # sizes the model's input size (64 x 96) does not divide
TEXTS = ["the red square", "the green circle"]


def model_config(method: str, text_dir: Path, hidden: int = 32) -> ModelConfig:
    return ModelConfig(
        method=method,
        backbone=BackboneConfig(name="resnet18"),
        text_encoder=TextEncoderConfig(weights=str(text_dir), pooling="cls"),
        fusion_dim=16,
        input_size=(64, 96),
        referformer=ReferFormerConfig(hidden_dim=hidden, enc_layers=1, dec_layers=1,
                                      dim_feedforward=32, mask_dim=8, num_queries=3),
    )  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tiny_bert, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for method in ("refvos", "referformer"):
        torch.manual_seed(0)
        cfg = model_config(method, tiny_bert)
        model, _ = build_model(cfg)
        paths[method] = folder / f"{method}.pt"
        save_checkpoint(paths[method], model=model.state_dict(), config={"model": to_dict(cfg)})
    return paths


def shapes_frame(t: int) -> np.ndarray:
    """BGR frame t: a red square moving right, a green disc moving left."""
    image = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
    cv2.rectangle(image, (5 + 3 * t, 8), (20 + 3 * t, 23), (40, 40, 220), -1)
    cv2.circle(image, (60 - 3 * t, 35), 8, (40, 200, 40), -1)
    return image


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "shapes.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (WIDTH, HEIGHT))
    for t in range(FRAMES):
        writer.write(shapes_frame(t))
    writer.release()
    return path


def predict(*args) -> int:
    return main(["predict", "--device", "cpu", *args])


def sentences_args() -> list[str]:
    return [arg for text in TEXTS for arg in ("--text", text)]


def decoded_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.mark.parametrize("method", ["refvos", "referformer"])
def test_video_file_in_masks_overlays_and_scores_out(checkpoints, video, tmp_path, method):
    out = tmp_path / "out"
    args = ["--video", str(video), "--checkpoint", str(checkpoints[method]), "--out", str(out)]
    assert predict(*args, *sentences_args(), "--window", "4", "--gif-frames", "4") == 0

    summary = json.loads((out / "predictions.json").read_text())
    names = [f"{t:05d}" for t in range(FRAMES)]
    assert summary["frames"] == names and summary["method"] == method
    assert [s["text"] for s in summary["sentences"]] == TEXTS
    for k, sentence in enumerate(summary["sentences"]):
        masks = [np.asarray(Image.open(out / sentence["masks"] / f"{n}.png")) for n in names]
        assert sorted(p.name for p in (out / f"masks/{k:02d}").iterdir()) == [
            f"{n}.png" for n in names
        ]
        assert all(m.shape == (HEIGHT, WIDTH) and set(np.unique(m)) <= {0, 255} for m in masks)
        assert sentence["areas"] == [int((m > 0).sum()) for m in masks]
        assert len(sentence["scores"]) == FRAMES
        assert all(0 <= s <= 1 for s in sentence["scores"])
    overlay = decoded_frames(out / "overlay.mp4")
    assert len(overlay) == FRAMES and overlay[0].shape == (HEIGHT, WIDTH, 3)
    with Image.open(out / "overlay.gif") as gif:
        assert gif.n_frames == 3  # at most --gif-frames (4) of the 9: every 3rd frame, 0, 3, 6
        assert gif.size == (320, round(HEIGHT * 320 / WIDTH))


def test_bf16_autocast_on_cpu(checkpoints, video, tmp_path):
    out = tmp_path / "out"
    args = ["--video", str(video), "--checkpoint", str(checkpoints["referformer"]), "--amp"]
    assert predict(*args, "--out", str(out), "--text", TEXTS[0], "--window", "5") == 0
    assert len(list((out / "masks/00").iterdir())) == FRAMES


def test_frame_folder_in_name_order(checkpoints, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(11):  # frame_10 sorts after frame_9 by number, not by text
        cv2.imwrite(str(folder / f"frame_{t}.png"), shapes_frame(t))
    out = tmp_path / "out"
    args = ["--video", str(folder), "--checkpoint", str(checkpoints["refvos"]), "--out", str(out)]
    assert predict(*args, "--text", "the red square", "--window", "3") == 0
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["frames"] == [f"frame_{t}" for t in range(11)]
    assert summary["fps"] == 24.0
    assert len(decoded_frames(out / "overlay.mp4")) == 11


# ----------------------------------------------------------------------------- online windows


class CountingFrames:
    """Frames whose pixels encode their number; records how many were read so far."""

    def __init__(self, count: int):
        self.count, self.read = count, 0

    def __iter__(self):
        for t in range(self.count):
            self.read += 1
            yield f"{t:05d}", Image.new("RGB", (8, 4), (t, t, t))


class SwappingModel(torch.nn.Module):
    """Two candidates: query 0 covers the left half, query 1 the right half. Query 0 has the
    better class score until frame 10, query 1 from then on."""

    def forward(self, frames, texts):
        raw = frames[0, :, 0, 0, 0] * 0.229 + 0.485  # undo ImageNet normalisation
        number = (raw * 255).round()
        later = (number >= 10).float()
        scores = torch.stack([0.6 - 0.2 * later, 0.4 + 0.2 * later], -1)  # (T, 2)
        masks = torch.full((len(number), 2, 4, 8), -10.0)
        masks[:, 0, :, :4] = masks[:, 1, :, 4:] = 10.0
        k = len(texts)
        scores = scores[None, :, :, None].expand(k, -1, -1, 1)
        return {"scores": scores, "masks": masks.expand(k, -1, -1, -1, -1)}


SWAPPING = Method(
    build=None, candidates=lambda o: Candidates(o["scores"], o["masks"]), mask_stride=1
)


def segment(affinity: float, frames: CountingFrames, window: int = 4):
    segmenter = OnlineSegmenter(SwappingModel(), SWAPPING, ["x"], size=(4, 8), window=window,
                                device=torch.device("cpu"), affinity=affinity)  # fmt: skip
    results = []
    for result in segmenter(frames):
        assert frames.read - len(results) <= window  # never more than a window held
        results.append(result)
    return results


def test_the_object_is_carried_across_windows():
    results = segment(0.5, CountingFrames(24))
    assert [r.name for r in results] == [f"{t:05d}" for t in range(24)]
    assert all(on_the_left(results))  # query 0, followed from the start, is kept throughout
    # choosing afresh in each window switches to the right half once query 1 scores higher
    fresh = on_the_left(segment(0.0, CountingFrames(24)))
    assert fresh[:9] == [True] * 9 and fresh[-6:] == [False] * 6


def on_the_left(results) -> list[bool]:
    return [bool(r.probabilities[0, :, :4].mean() > 0.5) for r in results]


def test_gif_stays_bounded_when_the_video_is_longer_than_announced(tmp_path):
    gif = GifWriter(tmp_path / "a.gif", fps=10, expected_frames=2, max_frames=4, width=16)
    for t in range(20):
        gif.add(Image.new("RGB", (32, 16), (10 * t, 0, 0)))
    assert [i for i, _ in gif.kept] == [0, 8, 16]  # the stride doubled from 1 to 8
    gif.close()
    with Image.open(tmp_path / "a.gif") as image:
        assert image.n_frames == 3 and image.size == (16, 8)


def test_choose_queries_weighs_overlap_with_the_previous_choice():
    scores = torch.tensor([0.45, 0.55]).view(1, 1, 2, 1)
    masks = torch.full((1, 1, 2, 2, 2), -20.0)
    masks[0, 0, 0, 0], masks[0, 0, 1, 1] = 20.0, 20.0  # query 0: top row, query 1: bottom row
    candidates = Candidates(scores, masks)
    previous = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # the top row was followed so far
    assert choose_queries(candidates, None, 0.5).item() == 1
    assert choose_queries(candidates, previous, 0.0).item() == 1
    assert choose_queries(candidates, previous, 0.5).item() == 0


# ----------------------------------------------------------------------------- bad input


def error_of(capsys, *args) -> str:
    assert predict(*args) == 2
    message = capsys.readouterr().err.strip().split("\n")[-1]  # after any progress bars
    assert message.startswith("error: ")
    return message


def test_unreadable_and_empty_videos(checkpoints, tmp_path, capsys):
    ck = ["--checkpoint", str(checkpoints["refvos"]), "--text", "a", "--out", str(tmp_path / "o")]
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"\x00not a video" * 50)
    assert "broken.mp4: not a readable video" in error_of(capsys, "--video", str(garbage), *ck)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty: no frames in this folder" in error_of(capsys, "--video", str(empty), *ck)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "notes.txt: not a video file" in error_of(capsys, "--video", str(text), *ck)
    missing = str(tmp_path / "nowhere.mp4")
    assert "nowhere.mp4: not found" in error_of(capsys, "--video", missing, *ck)
    assert not (tmp_path / "o").exists()


def test_empty_sentence(checkpoints, video, tmp_path, capsys):
    args = ["--video", str(video), "--checkpoint", str(checkpoints["refvos"])]
    message = error_of(capsys, *args, "--out", str(tmp_path / "o"), "--text", "a", "--text", " ")
    assert "--text #2: empty sentence" in message


def test_checkpoint_of_another_method_or_shape(checkpoints, video, tiny_bert, tmp_path, capsys):
    def config_file(cfg: ModelConfig) -> str:
        path = tmp_path / f"{cfg.method}_{cfg.referformer.hidden_dim}.yaml"
        path.write_text(yaml.safe_dump({"model": to_dict(cfg)}))
        return str(path)

    args = ["--video", str(video), "--text", "a", "--out", str(tmp_path / "o")]
    other = config_file(model_config("referformer", tiny_bert))
    message = error_of(capsys, *args, "--checkpoint", str(checkpoints["refvos"]), "--model", other)
    assert "refvos.pt: holds a refvos model, but the configuration asks for referformer" in message
    wider = config_file(model_config("referformer", tiny_bert, hidden=64))
    message = error_of(
        capsys, *args, "--checkpoint", str(checkpoints["referformer"]), "--model", wider
    )
    assert "referformer.pt: weights do not fit the model" in message and "shape mismatch" in message
    not_rvos = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(2)}, not_rvos)
    message = error_of(capsys, *args, "--checkpoint", str(not_rvos))
    assert "weights.pt: not an rvos checkpoint" in message


def test_existing_output_folder(checkpoints, video, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--video", str(video), "--checkpoint", str(checkpoints["refvos"]), "--text", "a"]
    assert predict(*args, "--out", str(out)) == 0
    first = (out / "predictions.json").read_text()
    assert "already exists; pass --overwrite" in error_of(capsys, *args, "--out", str(out))
    assert predict(*args, "--out", str(out), "--overwrite", "--threshold", "0.9") == 0
    assert json.loads((out / "predictions.json").read_text())["threshold"] == 0.9
    assert json.loads(first)["threshold"] == 0.5
    unrelated = tmp_path / "photos"
    (unrelated / "album").mkdir(parents=True)
    message = error_of(capsys, *args, "--out", str(unrelated), "--overwrite")
    assert "holds no predictions.json; not replacing it" in message
    assert (unrelated / "album").is_dir()


def test_checkpoint_from_an_mlflow_run(checkpoints, video, tmp_path, capsys, monkeypatch):
    from rvos.engine.tracking import CHECKPOINT_ARTIFACT, start_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    import mlflow

    mlflow.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    run = {"experiment": "t", "dataset": "demo", "method": "refvos", "params": {}}
    with start_run(stage="finetune", **run) as tracker:
        tracker.log_artifact(
            shutil.copy(checkpoints["refvos"], tmp_path / "model.pt"), "checkpoint"
        )
        trained = mlflow.active_run().info.run_id
    with start_run(stage="evaluate", **run):
        scored = mlflow.active_run().info.run_id
    args = ["--video", str(video), "--text", "a"]
    assert predict(*args, "--run", trained, "--out", str(tmp_path / "o")) == 0
    message = error_of(capsys, *args, "--run", scored, "--out", str(tmp_path / "p"))
    assert f"this evaluate run logged no {CHECKPOINT_ARTIFACT}" in message
    assert "no such MLflow run" in error_of(capsys, *args, "--run", "0" * 32, "--out", "q")


def test_bad_numbers(checkpoints, video, tmp_path, capsys):
    args = ["--video", str(video), "--checkpoint", str(checkpoints["refvos"]), "--text", "a"]
    args += ["--out", str(tmp_path / "o")]
    assert "--window = 1: expected at least 2" in error_of(capsys, *args, "--window", "1")
    assert "--threshold = 1.0: expected" in error_of(capsys, *args, "--threshold", "1")
    assert "--affinity = 2.0: expected" in error_of(capsys, *args, "--affinity", "2")
    assert "--amp fp16: expected a CUDA device" in error_of(capsys, *args, "--amp", "fp16")
