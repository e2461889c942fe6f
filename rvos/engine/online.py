"""Online inference: a stream of frames segmented a window at a time, in bounded memory.

Only one window of frames is ever held. Consecutive windows overlap by one frame, and the
chosen object is carried across them: in each new window every query is scored by its class
score and by how well its mask on the shared frame matches the mask chosen there before
(`affinity` weighs the two). So the same object is followed through a long video even where
another query's class score is briefly higher, as online methods carry their track state
forward instead of choosing afresh in every clip.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from rvos.data.transforms import frames_to_tensor
from rvos.engine.train import AMP_DTYPES
from rvos.models.build import Method
from rvos.models.postprocess import Candidates, probabilities, soft_iou


@dataclass(frozen=True)
class FrameResult:
    name: str
    image: Image.Image
    probabilities: np.ndarray  # (K, H, W) float32 at the frame's size, one map per sentence
    scores: np.ndarray  # (K,) the chosen object's class score in this frame


def choose_queries(candidates: Candidates, previous: Tensor | None, affinity: float) -> Tensor:
    """(K,) the query each sentence follows in this window. `previous` (K, h, w) holds the
    probabilities chosen on the window's first frame by the window before, or None."""
    score = candidates.clip_scores()
    if previous is not None and affinity > 0:
        first = candidates.masks[:, 0].float().sigmoid()  # (K, Q, h, w)
        score = (1 - affinity) * score + affinity * soft_iou(first, previous[:, None])
    return score.argmax(-1)


class OnlineSegmenter:
    """Segments the frames of one video for K sentences, window by window."""

    def __init__(
        self,
        model: nn.Module,
        method: Method,
        texts: list[str],
        *,
        size: tuple[int, int],
        window: int,
        device: torch.device,
        amp: str = "off",
        affinity: float = 0.5,
    ):
        if window < 2:
            raise ValueError(f"window = {window}: expected at least 2 frames (windows overlap)")
        if not 0 <= affinity <= 1:
            raise ValueError(f"affinity = {affinity}: expected a value in [0, 1]")
        self.model, self.method, self.texts = model.to(device).eval(), method, texts
        self.size, self.window, self.device = size, window, device
        self.amp, self.affinity = amp, affinity

    @torch.no_grad()
    def __call__(self, frames: Iterable[tuple[str, Image.Image]]) -> Iterator[FrameResult]:
        """FrameResults in frame order, as soon as each window is done."""
        stream = iter(frames)
        carried: tuple[str, Image.Image] | None = None  # the last frame, shared with the next
        previous: Tensor | None = None
        while True:
            new = list(islice(stream, self.window - (carried is not None)))
            if not new:
                return
            window = ([carried] if carried is not None else []) + new
            candidates = self._candidates([image for _, image in window])
            query = choose_queries(candidates, previous, self.affinity)
            chosen = candidates.mask_logits(query)  # (K, t, h, w)
            previous = chosen[:, -1].sigmoid()
            scores = candidates.frame_scores(query).cpu().numpy()
            probs = probabilities(chosen, self.size)
            skip = len(window) - len(new)
            for i in range(skip, len(window)):
                name, image = window[i]
                full = F.interpolate(probs[:, i : i + 1], size=image.size[::-1], mode="bilinear")
                yield FrameResult(name, image, full[:, 0].cpu().numpy(), scores[:, i])
            carried = window[-1]

    def _candidates(self, images: list[Image.Image]) -> Candidates:
        clip = frames_to_tensor(images, self.size).unsqueeze(0).to(self.device)
        amp = AMP_DTYPES.get(self.amp)
        with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
            candidates = self.method.candidates(self.model(clip, self.texts))
        return Candidates(candidates.scores.float(), candidates.masks.float())
