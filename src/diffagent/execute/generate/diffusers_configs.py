"""Local diffusers config folders per family, so that ``from_single_file`` never asks the hub.

A single-file checkpoint holds weights only; diffusers needs each component's config beside it. These are
the configs of the reference pipelines (SD 1.5, SD 2.x 512 and 768-v, SDXL base 1.0), written out here and
materialised under ``DIFFAGENT_HOME/diffusers-configs/KEY`` on first use. The CLIP tokenizer files
(vocab.json, merges.txt; the same BPE for every family) are built from OpenCLIP's vocabulary when that
package lies on disk, else fetched once from the hub, else read from ``DIFFAGENT_HOME/clip-tokenizer``.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from ...config import home
from .base import GenerationError

__all__ = ["CONFIGS", "config_folder"]

_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
          "num_train_timesteps": 1000, "steps_offset": 1, "clip_sample": False,
          "set_alpha_to_one": False}  # fmt: skip


def _unet(**fields: Any) -> dict[str, Any]:
    base = {
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "center_input_sample": False,
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4,
        "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
        "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280],
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    }  # fmt: skip
    return {**base, **fields}


def _vae(**fields: Any) -> dict[str, Any]:
    base = {
        "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
        "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215,
    }  # fmt: skip
    return {**base, **fields}


def _clip(
    hidden: int, layers: int, heads: int, act: str, projection: int, cls: str = "CLIPTextModel"
) -> dict:
    return {
        "architectures": [cls], "model_type": "clip_text_model", "hidden_size": hidden,
        "intermediate_size": hidden * 4, "num_attention_heads": heads, "num_hidden_layers": layers,
        "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": act, "projection_dim": projection,
        "layer_norm_eps": 1e-05, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
    }  # fmt: skip


def _tokenizer(pad: str) -> dict[str, Any]:
    return {
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "errors": "replace", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": pad, "add_prefix_space": False,
    }  # fmt: skip


def _index(pipeline: str, *extra: str, **flags: Any) -> dict[str, Any]:
    components = {
        "vae": ["diffusers", "AutoencoderKL"], "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"], "feature_extractor": [None, None],
        "image_encoder": [None, None],
    }  # fmt: skip
    if pipeline == "StableDiffusionPipeline":
        components.update(safety_checker=[None, None])
        flags.setdefault("requires_safety_checker", False)
    for name in extra:
        components[name] = (
            ["transformers", "CLIPTextModelWithProjection"]
            if name == "text_encoder_2"
            else ["transformers", "CLIPTokenizer"]
        )
    return {"_class_name": pipeline, "_diffusers_version": "0.42.1", **components, **flags}


_SD1_TEXT = _clip(768, 12, 12, "quick_gelu", 768)
_SD2_TEXT = _clip(1024, 23, 16, "gelu", 512)
_SD2_UNET = {
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
}

CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "SD1": {
        "model_index.json": _index("StableDiffusionPipeline"),
        "unet": _unet(attention_head_dim=8, cross_attention_dim=768, sample_size=64),
        "vae": _vae(),
        "text_encoder": _SD1_TEXT,
        "tokenizer": _tokenizer("<|endoftext|>"),
        "scheduler": {
            "_class_name": "PNDMScheduler",
            **_BETAS,
            "skip_prk_steps": True,
            "prediction_type": "epsilon",
        },
    },
    "SD2-512": {
        "model_index.json": _index("StableDiffusionPipeline"),
        "unet": _unet(**_SD2_UNET, sample_size=64, upcast_attention=False),
        "vae": _vae(),
        "text_encoder": _SD2_TEXT,
        "tokenizer": _tokenizer("!"),
        "scheduler": {
            "_class_name": "PNDMScheduler",
            **_BETAS,
            "skip_prk_steps": True,
            "prediction_type": "epsilon",
        },
    },
    "SD2-768-v": {
        "model_index.json": _index("StableDiffusionPipeline"),
        "unet": _unet(**_SD2_UNET, sample_size=96, upcast_attention=True),
        "vae": _vae(sample_size=768),
        "text_encoder": _SD2_TEXT,
        "tokenizer": _tokenizer("!"),
        "scheduler": {"_class_name": "DDIMScheduler", **_BETAS, "prediction_type": "v_prediction"},
    },
    "SDXL": {
        "model_index.json": _index(
            "StableDiffusionXLPipeline", "text_encoder_2", "tokenizer_2", force_zeros_for_empty_prompt=True
        ),
        "unet": _unet(
            addition_embed_type="text_time",
            addition_embed_type_num_heads=64,
            addition_time_embed_dim=256,
            attention_head_dim=[5, 10, 20],
            block_out_channels=[320, 640, 1280],
            cross_attention_dim=2048,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            projection_class_embeddings_input_dim=2816,
            sample_size=128,
            transformer_layers_per_block=[1, 2, 10],
            use_linear_projection=True,
        ),
        "vae": _vae(sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        "text_encoder": _SD1_TEXT,
        "text_encoder_2": _clip(1280, 32, 20, "gelu", 1280, "CLIPTextModelWithProjection"),
        "tokenizer": _tokenizer("<|endoftext|>"),
        "tokenizer_2": _tokenizer("!"),
        "scheduler": {
            "_class_name": "EulerDiscreteScheduler",
            **_BETAS,
            "interpolation_type": "linear",
            "prediction_type": "epsilon",
            "timestep_spacing": "leading",
            "use_karras_sigmas": False,
        },
    },
}
"""Config key (:func:`diffagent.execute.diffusers.pipeline_config`) -> file or sub-folder -> its JSON."""

_CONFIG_FILES = {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json",
                 "text_encoder_2": "config.json", "tokenizer": "tokenizer_config.json",
                 "tokenizer_2": "tokenizer_config.json", "scheduler": "scheduler_config.json"}  # fmt: skip


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table."""
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    chars, extra = list(keep), 0
    for byte in range(256):
        if byte not in keep:
            keep.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def _clip_tokenizer_files() -> Path:
    """A folder with CLIP's ``vocab.json`` and ``merges.txt`` (made once under ``DIFFAGENT_HOME``)."""
    folder = home() / "clip-tokenizer"
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.find_spec("open_clip")  # found without importing it (it imports torchvision)
    places = spec.submodule_search_locations if spec else None
    bpe = Path(places[0]) / "bpe_simple_vocab_16e6.txt.gz" if places else None
    if bpe is not None and bpe.is_file():
        with gzip.open(bpe, "rt", encoding="utf-8") as handle:
            merges = handle.read().split("\n")[1 : 49152 - 256 - 2 + 1]
        letters = list(_bytes_to_unicode().values())
        vocab = [*letters, *(c + "</w>" for c in letters), *("".join(m.split()) for m in merges)]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        (folder / "vocab.json").write_text(
            json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False)
        )
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        return folder
    try:
        from huggingface_hub import hf_hub_download

        for name in ("vocab.json", "merges.txt"):
            shutil.copy(hf_hub_download("openai/clip-vit-large-patch14", name), folder / name)
    except Exception:  # no network, no hub: say where to put the two files
        raise GenerationError(
            "the diffusers backend needs CLIP's tokenizer once: go online, pip install open-clip-torch"
            f" --no-deps, or put vocab.json and merges.txt in {folder}"
        ) from None
    return folder


def config_folder(key: str) -> Path:
    """The local config folder for config key ``key``, written on first use."""
    if key not in CONFIGS:
        raise GenerationError(
            f"no local diffusers config for the {key} family yet (known: {', '.join(CONFIGS)})"
        )
    folder = home() / "diffusers-configs" / key
    if (folder / "model_index.json").is_file():
        return folder
    tokenizer = _clip_tokenizer_files()
    staging = folder.with_name(key + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    for name, config in CONFIGS[key].items():
        if name.endswith(".json"):
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(json.dumps(config, indent=1))
            continue
        (staging / name).mkdir(parents=True)
        (staging / name / _CONFIG_FILES[name]).write_text(json.dumps(config, indent=1))
        if name.startswith("tokenizer"):
            for file in ("vocab.json", "merges.txt"):
                shutil.copy(tokenizer / file, staging / name / file)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder
