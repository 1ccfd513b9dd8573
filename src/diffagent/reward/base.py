"""The two interfaces of the reward package: image scorers, and rewards of API calls.

An :class:`ImageScorer` rates (prompt, image) pairs (CLIP score, ImageReward, HPS v2, the unified metric).
A :class:`Reward` rates API calls for one instruction; it is what the RRHF trainer calls. The trainer never
sees scorers: an image-based reward (:class:`GeneratedImageReward`) renders each call with a generator and
scores the images, while the offline proxy (``proxy.ProxyReward``) rates calls from catalogue signals.
Either plugs in under the same :class:`Reward` protocol, so real scorers replace the proxy without any
change to the trainer.

This module imports neither torch nor Pillow: images are anything :func:`._images.to_pixels` reads
(a Pillow image, an ``H x W x 3`` NumPy array or a ``3 x H x W`` tensor).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UserInputError
from ..protocols import Reward
from ..schema import APICall

__all__ = ["GeneratedImageReward", "ImageLike", "ImageScorer", "Reward"]

ImageLike = Any
"""A Pillow image, an ``H x W x 3`` NumPy array (uint8, or float in [0, 1]) or a ``3 x H x W`` tensor."""


class ImageScorer(ABC):
    """Rates how well each image matches its prompt (and how good it looks); higher is better."""

    name: str

    @abstractmethod
    def score(self, prompts: Sequence[str], images: Sequence[ImageLike]) -> list[float]:
        """One score per (prompt, image) pair, batched; the two lists have the same length."""

    @staticmethod
    def check_lengths(prompts: Sequence[str], images: Sequence[ImageLike]) -> None:
        """Reject mismatched inputs with a clear message instead of scoring a shifted pairing."""
        if len(prompts) != len(images):
            raise UserInputError(
                f"{len(prompts)} prompts but {len(images)} images: pass one prompt per image"
            )


class GeneratedImageReward:
    """The reward of a call is the image metric of the image it generates, rated against the instruction.

    ``generate`` executes one API call (diffusers, AUTOMATIC1111, ComfyUI ...) and returns its image;
    ``metric`` is usually the unified metric (``unified.UnifiedMetric``). Images are rated against the
    user's instruction, not the call's prompt, so that trigger words or prompt edits earn nothing by
    themselves. The reference call is not needed: the image speaks for itself.
    """

    def __init__(self, generate: Callable[[APICall], ImageLike], metric: ImageScorer) -> None:
        self.generate = generate
        self.metric = metric
        self.name = f"image:{metric.name}"

    def score_calls(
        self, instruction: str, calls: Sequence[APICall], reference: APICall | None = None
    ) -> list[float]:
        if not calls:
            return []
        images = [self.generate(call) for call in calls]
        return self.metric.score([instruction] * len(images), images)
