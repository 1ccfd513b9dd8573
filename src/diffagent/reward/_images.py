"""Image preprocessing for the scorers in plain torch, so that neither Pillow nor torchvision is required.

Every scorer here was trained with the same evaluation transform (CLIP's): resize the shorter side to the
model's input size with bicubic interpolation, centre-crop a square, normalise per channel. PIL's bicubic
resize is antialiased and works on 8-bit images; ``F.interpolate(..., antialias=True)`` followed by
rounding to 8 bits reproduces it closely (torchvision takes the same route for tensors).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserInputError
from .base import ImageLike

__all__ = ["OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "to_pixels"]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _as_chw_float(image: ImageLike) -> torch.Tensor:
    """A ``3 x H x W`` float tensor in [0, 1] from a Pillow image, a NumPy array or a tensor."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a Pillow image, without importing Pillow
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        array = image[..., None].repeat(3, axis=-1) if image.ndim == 2 else image
        if array.ndim != 3 or array.shape[-1] not in (3, 4):
            raise UserInputError(f"an image array must be H x W x 3, got shape {tuple(image.shape)}")
        tensor = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise UserInputError(f"an image tensor must be 3 x H x W, got shape {tuple(tensor.shape)}")
    else:
        raise UserInputError(f"cannot read an image from {type(image).__name__}")
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    return tensor.float().clamp(0.0, 1.0)


def _resize_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    height, width = pixels.shape[-2:]
    short, long = (height, width) if height <= width else (width, height)
    new_long = int(size * long / short)
    new_h, new_w = (size, new_long) if height <= width else (new_long, size)
    if (new_h, new_w) != (height, width):
        pixels = F.interpolate(
            pixels[None] * 255.0, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
        )[0]
        pixels = pixels.round().clamp(0.0, 255.0) / 255.0
    top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)
    return pixels[:, top : top + size, left : left + size]


def to_pixels(
    images: Sequence[ImageLike],
    size: int,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
) -> torch.Tensor:
    """A ``B x 3 x size x size`` batch: shorter side resized to ``size``, centre-cropped, normalised."""
    batch = torch.stack([_resize_crop(_as_chw_float(image), size) for image in images])
    mean_t = torch.tensor(mean, dtype=batch.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=batch.dtype).view(1, 3, 1, 1)
    return (batch - mean_t) / std_t
