"""ImageReward (Xu et al. 2023): BLIP's ViT-L image encoder, its BERT text encoder cross-attending to the
image, and an MLP head on the [CLS] state; the output is standardised by the published mean and std.

The published ``ImageReward.pt`` (in ``THUDM/ImageReward``) is a state dict of the authors' BLIP code.
:func:`imagereward_to_transformers` renames it into ``transformers``' BLIP classes (``BlipVisionModel``,
``BlipTextModel``) plus :class:`RewardHead`, so the ``image-reward`` package (with its old timm and
fairscale pins) is not needed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserInputError
from ._hub import load_state_dict, resolve_file
from .base import ImageLike, ImageScorer
from .clip import default_device

__all__ = [
    "IMAGEREWARD_MEAN",
    "IMAGEREWARD_STD",
    "ImageRewardModel",
    "ImageRewardScorer",
    "RewardHead",
    "imagereward_configs",
    "imagereward_to_transformers",
]

IMAGEREWARD_REPO = "THUDM/ImageReward"
IMAGEREWARD_FILE = "ImageReward.pt"
# bert-base-uncased's WordPiece vocabulary; BLIP adds [DEC] and [ENC] after it, which scoring never uses.
IMAGEREWARD_TOKENIZER = "google-bert/bert-base-uncased"
# Published standardisation of the raw MLP output (ImageReward.py): score = (raw - mean) / std.
IMAGEREWARD_MEAN = 0.16717362830052426
IMAGEREWARD_STD = 1.0333394966054072
TEXT_MAX_LENGTH = 35

# Saved by the authors' code but unused when scoring: BLIP's contrastive projections and a position-id buffer.
_UNUSED = re.compile(r"^blip\.(vision_proj|text_proj)\.|^blip\.text_encoder\.embeddings\.position_ids$")
_VIT_TOP = {
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
    "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    "norm.weight": "post_layernorm.weight",
    "norm.bias": "post_layernorm.bias",
}
_VIT_BLOCK = re.compile(
    r"^blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$"
)
_VIT_PARTS = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


class RewardHead(nn.Module):
    """ImageReward's MLP: 768 -> 1024 -> 128 -> 64 -> 16 -> 1, linear (no activations, as published).

    The dropout layers are kept so that parameter names (``layers.0``, ``layers.2`` ...) match the file.
    """

    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class ImageRewardModel(nn.Module):
    """ImageReward's scoring path on transformers' BLIP modules; returns the raw (unstandardised) reward."""

    def __init__(self, vision_config: Any, text_config: Any) -> None:
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        self.vision_model = BlipVisionModel(vision_config)
        self.text_encoder = BlipTextModel(text_config, add_pooling_layer=False)
        self.mlp = RewardHead(text_config.hidden_size)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        text = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        ).last_hidden_state
        return self.mlp(text[:, 0, :]).squeeze(-1)


def imagereward_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``ImageReward.pt`` keys renamed for :class:`ImageRewardModel`; unknown keys raise, unused ones drop."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _UNUSED.match(key):
            continue
        if key.startswith("blip.visual_encoder."):
            name = key[len("blip.visual_encoder.") :]
            if name in _VIT_TOP:
                out[f"vision_model.{_VIT_TOP[name]}"] = value
                continue
            match = _VIT_BLOCK.match(name)
            if match is None:
                raise UserInputError(f"unknown ImageReward key {key!r}")
            index, part, kind = match.groups()
            out[f"vision_model.encoder.layers.{index}.{_VIT_PARTS[part]}.{kind}"] = value
        elif key.startswith("blip.text_encoder."):
            out[f"text_encoder.{key[len('blip.text_encoder.') :]}"] = value  # BLIP's BERT: same names
        elif key.startswith("mlp.layers."):
            out[key] = value
        else:
            raise UserInputError(f"unknown ImageReward key {key!r}")
    return out


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return 1 + max(int(m.group(1)) for key in state if (m := regex.match(key)))


def imagereward_configs(state: dict[str, torch.Tensor], *, head_width: int = 64) -> tuple[Any, Any]:
    """``(BlipVisionConfig, BlipTextConfig)`` of an ``ImageReward.pt`` state dict, read off its shapes.

    Head counts are not stored; both BLIP towers use heads of 64 channels (ViT-L: 16, BERT-base: 12).
    """
    from transformers import BlipTextConfig, BlipVisionConfig

    patch = state["blip.visual_encoder.patch_embed.proj.weight"]
    vision_width = patch.shape[0]
    grid = math.isqrt(state["blip.visual_encoder.pos_embed"].shape[1] - 1)
    vision = BlipVisionConfig(
        hidden_size=vision_width,
        intermediate_size=state["blip.visual_encoder.blocks.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=_count(state, r"^blip\.visual_encoder\.blocks\.(\d+)\."),
        num_attention_heads=vision_width // head_width,
        image_size=grid * patch.shape[-1],
        patch_size=patch.shape[-1],
        layer_norm_eps=1e-6,  # BLIP's ViT
        hidden_act="gelu",
    )
    words = state["blip.text_encoder.embeddings.word_embeddings.weight"]
    text = BlipTextConfig(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        encoder_hidden_size=state["blip.text_encoder.encoder.layer.0.crossattention.self.key.weight"].shape[
            1
        ],
        intermediate_size=state["blip.text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0],
        num_hidden_layers=_count(state, r"^blip\.text_encoder\.encoder\.layer\.(\d+)\."),
        num_attention_heads=words.shape[1] // head_width,
        max_position_embeddings=state["blip.text_encoder.embeddings.position_embeddings.weight"].shape[0],
        layer_norm_eps=1e-12,
        hidden_act="gelu",
        is_decoder=True,  # builds the cross-attention layers; forward runs bidirectionally
    )
    return vision, text


def imagereward_model_from_state_dict(
    state: dict[str, torch.Tensor], *, head_width: int = 64
) -> ImageRewardModel:
    """An :class:`ImageRewardModel` holding ``state``; every weight must be used and every one filled."""
    model = ImageRewardModel(*imagereward_configs(state, head_width=head_width))
    missing, unexpected = model.load_state_dict(imagereward_to_transformers(state), strict=False)
    if missing or unexpected:
        raise UserInputError(
            f"ImageReward checkpoint does not fit: missing {missing}, unexpected {unexpected}"
        )
    return model


class ImageRewardScorer(ImageScorer):
    """ImageReward's standardised score of each (prompt, image) pair, as ``ImageReward.score`` returns it."""

    name = "imagereward"

    def __init__(
        self,
        model: ImageRewardModel,
        tokenizer: Any,
        *,
        device: str | None = None,
        batch_size: int = 16,
        source: str | None = None,
    ) -> None:
        self.device = device or default_device()
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.image_size = int(model.vision_model.config.image_size)
        self.source = source

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path | None = None,
        *,
        tokenizer: str | Path = IMAGEREWARD_TOKENIZER,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
    ) -> ImageRewardScorer:
        """``checkpoint``: ``ImageReward.pt``, a folder holding it, or a Hub repository (default
        ``THUDM/ImageReward``); ``tokenizer``: a BERT (uncased) tokenizer folder or Hub repository."""
        from transformers import AutoTokenizer

        path = resolve_file(checkpoint, IMAGEREWARD_FILE, IMAGEREWARD_REPO)
        model = imagereward_model_from_state_dict(load_state_dict(path)).to(dtype)
        return cls(
            model,
            AutoTokenizer.from_pretrained(str(tokenizer)),
            device=device,
            batch_size=batch_size,
            source=str(path),
        )

    @torch.no_grad()
    def score(self, prompts: Sequence[str], images: Sequence[ImageLike]) -> list[float]:
        from ._images import to_pixels

        self.check_lengths(prompts, images)
        dtype = next(self.model.parameters()).dtype
        out: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            text = self.tokenizer(
                list(prompts[start : start + self.batch_size]),
                padding="max_length",
                truncation=True,
                max_length=TEXT_MAX_LENGTH,
                return_tensors="pt",
            ).to(self.device)
            pixels = to_pixels(images[start : start + self.batch_size], self.image_size).to(
                self.device, dtype
            )
            raw = self.model(pixels, text["input_ids"], text["attention_mask"])
            out += ((raw.double().cpu() - IMAGEREWARD_MEAN) / IMAGEREWARD_STD).tolist()
        return out
