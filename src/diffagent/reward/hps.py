"""HPS v2 / v2.1 (Wu et al. 2023): an OpenCLIP ViT-H/14 fine-tuned on human preferences.

The published checkpoints (``HPS_v2_compressed.pt``, ``HPS_v2.1_compressed.pt`` in ``xswu/HPSv2``) are
OpenCLIP state dicts. :func:`open_clip_to_transformers` renames them into ``transformers.CLIPModel``'s
layout, so no ``open-clip-torch`` (and its torchvision) is needed. The score is what ``hpsv2.score``
returns: the cosine of the normalised image and text embeddings (about 0.2-0.3; papers print it x100).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import UserInputError
from ._hub import load_state_dict, resolve_file
from .clip import ClipSimilarityScorer, load_clip_tokenizer

__all__ = ["HPS_FILES", "HPSv2Scorer", "clip_config_from_open_clip", "open_clip_to_transformers"]

HPS_REPO = "xswu/HPSv2"
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
# The tokenizer of OpenCLIP ViT-H/14 in Hugging Face format (the same BPE as OpenAI CLIP).
HPS_TOKENIZER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

# Derived buffers that OpenCLIP may save beside the weights; transformers rebuilds its own.
_DERIVED = {"attn_mask"}

_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")
_BLOCK_PARTS = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_TOP = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
# OpenCLIP keeps projections as (width, embed) matrices applied as x @ P; nn.Linear stores P transposed.
_PROJECTIONS = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}


def open_clip_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An OpenCLIP ViT state dict renamed (and reshaped where needed) for ``transformers.CLIPModel``.

    Raises :class:`UserInputError` on a key it does not know, so an unexpected checkpoint fails loudly.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _DERIVED:
            continue
        if key in _TOP:
            out[_TOP[key]] = value
        elif key in _PROJECTIONS:
            out[_PROJECTIONS[key]] = value.t().contiguous()
        elif match := _BLOCK.match(key):
            tower = "vision_model" if match.group(1) else "text_model"
            prefix = f"{tower}.encoder.layers.{match.group(2)}."
            name, _, kind = match.group(3).rpartition(".")
            if name == "attn" and kind in ("in_proj_weight", "in_proj_bias"):
                suffix = "weight" if kind == "in_proj_weight" else "bias"
                for part, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}self_attn.{part}.{suffix}"] = chunk.contiguous()
            elif name in _BLOCK_PARTS:
                out[f"{prefix}{_BLOCK_PARTS[name]}.{kind}"] = value
            else:
                raise UserInputError(f"unknown OpenCLIP key {key!r}: not a ViT CLIP checkpoint?")
        else:
            raise UserInputError(f"unknown OpenCLIP key {key!r}: not a ViT CLIP checkpoint?")
    return out


def _layers(state: dict[str, torch.Tensor], visual: bool) -> int:
    pattern = re.compile(
        r"^visual\.transformer\.resblocks\.(\d+)\." if visual else r"^transformer\.resblocks\.(\d+)\."
    )
    return 1 + max(int(m.group(1)) for key in state if (m := pattern.match(key)))


def clip_config_from_open_clip(
    state: dict[str, torch.Tensor], *, head_width: int = 64, hidden_act: str = "gelu"
) -> Any:
    """The ``CLIPConfig`` of an OpenCLIP ViT state dict, read off its tensor shapes.

    Head counts are not stored: OpenCLIP uses heads of ``head_width`` (64) channels in both towers.
    ViT-H/14 uses GELU; OpenAI's original models use QuickGELU (``hidden_act="quick_gelu"``).
    """
    from transformers import CLIPConfig

    vision_width = state["visual.conv1.weight"].shape[0]
    patch = state["visual.conv1.weight"].shape[-1]
    grid = math.isqrt(state["visual.positional_embedding"].shape[0] - 1)
    text_width = state["token_embedding.weight"].shape[1]
    vocab = state["token_embedding.weight"].shape[0]
    vision = {
        "hidden_size": vision_width,
        "intermediate_size": state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        "num_hidden_layers": _layers(state, visual=True),
        "num_attention_heads": vision_width // head_width,
        "image_size": grid * patch,
        "patch_size": patch,
        "hidden_act": hidden_act,
    }
    text = {
        "vocab_size": vocab,
        "hidden_size": text_width,
        "intermediate_size": state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        "num_hidden_layers": _layers(state, visual=False),
        "num_attention_heads": text_width // head_width,
        "max_position_embeddings": state["positional_embedding"].shape[0],
        "hidden_act": hidden_act,
        # CLIP's BPE ends with <|startoftext|>, <|endoftext|>; the text tower pools at <|endoftext|>.
        "bos_token_id": vocab - 2,
        "eos_token_id": vocab - 1,
        "pad_token_id": vocab - 1,
    }
    return CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=state["text_projection"].shape[1]
    )


def clip_model_from_open_clip(state: dict[str, torch.Tensor], *, head_width: int = 64) -> Any:
    """A ``CLIPModel`` holding an OpenCLIP state dict; every weight must be used and every one filled."""
    from transformers import CLIPModel

    model = CLIPModel(clip_config_from_open_clip(state, head_width=head_width))
    missing, unexpected = model.load_state_dict(open_clip_to_transformers(state), strict=False)
    if missing or unexpected:
        raise UserInputError(f"OpenCLIP checkpoint does not fit: missing {missing}, unexpected {unexpected}")
    return model


class HPSv2Scorer(ClipSimilarityScorer):
    """Human Preference Score v2: cosine of HPS's CLIP ViT-H/14 image and text embeddings."""

    name = "hpsv2"

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path | None = None,
        *,
        version: str = "v2.0",
        tokenizer: str | Path = HPS_TOKENIZER,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
    ) -> HPSv2Scorer:
        """``checkpoint``: a ``.pt`` file, a folder holding it, or a Hub repository (default ``xswu/HPSv2``).

        ``version`` picks the file (``v2.0`` as in the DiffAgent paper, or ``v2.1``); ``tokenizer`` is a Hub
        repository, a local folder, or OpenAI's ``bpe_simple_vocab_16e6.txt.gz``.
        """
        if version not in HPS_FILES:
            raise UserInputError(f"unknown HPS version {version!r}; choose one of: {', '.join(HPS_FILES)}")
        path = resolve_file(checkpoint, HPS_FILES[version], HPS_REPO)
        model = clip_model_from_open_clip(load_state_dict(path)).to(dtype)
        return cls(
            model, load_clip_tokenizer(tokenizer), device=device, batch_size=batch_size, source=str(path)
        )
