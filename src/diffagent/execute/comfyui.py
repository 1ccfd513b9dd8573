"""ComfyUI: a workflow in API format, and the ``{"prompt": graph}`` body ``POST /prompt`` takes.

Node classes and inputs are ComfyUI's built-in ones (``nodes.py``): checkpoint, LoRA chain, clip skip only
when asked (SD 2.x has its own default), text encoders, empty latent, KSampler, optional hires pass and
VAE, decode, save. Textual inversions are written ``embedding:NAME`` so that ComfyUI loads them instead of
reading the name as words.
"""

from __future__ import annotations

import re
from typing import Any

from ..catalog import Family, family_spec
from ..filenames import safe_stem
from ..schema import APICall
from ._common import Files, get, model_file, optional, resolve_seed, split_sampler, vae_file

__all__ = ["COMFY_SAMPLERS", "comfyui_body", "to_comfyui", "with_embeddings"]

# AUTOMATIC1111 sampler (schedule suffix removed) -> ComfyUI KSampler sampler_name.
COMFY_SAMPLERS = {
    "Euler a": "euler_ancestral", "Euler": "euler", "LMS": "lms", "Heun": "heun", "DPM2": "dpm_2",
    "DPM2 a": "dpm_2_ancestral", "DPM++ 2S a": "dpmpp_2s_ancestral", "DPM++ 2M": "dpmpp_2m",
    "DPM++ SDE": "dpmpp_sde", "DPM++ 2M SDE": "dpmpp_2m_sde", "DPM++ 2M SDE Heun": "dpmpp_2m_sde",
    "DPM++ 3M SDE": "dpmpp_3m_sde", "DPM fast": "dpm_fast", "DPM adaptive": "dpm_adaptive",
    "DDIM": "ddim", "PLMS": "euler", "UniPC": "uni_pc", "LCM": "lcm", "DDPM": "ddpm", "Restart": "euler",
}  # fmt: skip


def with_embeddings(text: str, api: APICall, files: Files | None) -> str:
    """``text`` with each mention of a textual inversion the call uses written ``embedding:FILE_STEM``."""
    for item in optional(api, "embeddings") or ():
        name = model_file(get(item, "version_id"), get(item, "name", "embedding"), files).name
        stem = re.sub(r"[\s,()\[\]{}]+", "_", safe_stem(name))  # ComfyUI reads the name up to a space
        words = {get(item, "name", ""), stem, *(get(item, "trigger_words") or ())} - {""}
        pattern = "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
        text = re.sub(
            rf"(?<![\w:])(?:{pattern})(?![\w])", f"embedding:{stem}".replace("\\", r"\\"), text, flags=re.I
        )
    return text


Link = list[Any]
"""A node output in API format: ``[node id, output index]``."""


def _loaders(
    api: APICall, files: Files | None, spec: Family | None
) -> tuple[dict[str, Any], Link, Link, Link]:
    """The nodes that load the model, and its (model, clip, vae) outputs. A family whose Civitai files are
    the diffusion model alone (Flux) loads it with ``UNETLoader`` beside its text encoders and VAE."""
    checkpoint = model_file(api.checkpoint.version_id, api.checkpoint.name, files)
    if spec is None or spec.comfy_loader == "checkpoint":
        nodes: dict[str, Any] = {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint.name}}
        }
        return nodes, ["1", 0], ["1", 1], ["1", 2]
    first, second = spec.comfy_text_encoders
    nodes = {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": checkpoint.name, "weight_dtype": "default"},
        },
        "14": {
            "class_type": "DualCLIPLoader",
            "inputs": {"clip_name1": first, "clip_name2": second, "type": spec.comfy_clip_type},
        },
        "15": {"class_type": "VAELoader", "inputs": {"vae_name": spec.comfy_vae}},
    }
    return nodes, ["1", 0], ["14", 0], ["15", 0]


def to_comfyui(api: APICall, files: Files | None = None) -> dict[str, Any]:
    """The workflow graph (API format); ``seed: -1`` becomes a fresh random seed.

    Per family (:mod:`diffagent.catalog.families`): Flux loads its UNet, text encoders and VAE apart, takes
    its distilled guidance from a ``FluxGuidance`` node (the sampler's CFG stays at the call's, 1) and an
    SD3-style latent; clip skip is only set where the family uses CLIP layers that way.
    """
    sampler, scheduler = split_sampler(api.sampler)
    spec = family_spec(api.checkpoint.base_model)
    nodes, model, clip, vae = _loaders(api, files, spec)
    graph: dict[str, Any] = dict(nodes)
    flow = spec is not None and spec.prediction == "flow"
    for number, lora in enumerate(api.loras, start=10):
        graph[str(number)] = {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": model_file(lora.version_id, lora.name, files).name,
                "strength_model": lora.weight,
                "strength_clip": lora.weight,
                "model": model,
                "clip": clip,
            },
        }
        model, clip = [str(number), 0], [str(number), 1]
    if api.clip_skip > 1 and not flow:
        graph["2"] = {
            "class_type": "CLIPSetLastLayer",
            "inputs": {"stop_at_clip_layer": -api.clip_skip, "clip": clip},
        }
        clip = ["2", 0]
    graph["3"] = {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": with_embeddings(api.prompt, api, files), "clip": clip},
    }
    positive = ["3", 0]
    guidance = optional(api, "guidance")
    if guidance is not None:
        graph["13"] = {
            "class_type": "FluxGuidance",
            "inputs": {"guidance": guidance, "conditioning": positive},
        }
        positive = ["13", 0]
    negative = with_embeddings(api.negative_prompt, api, files)
    graph["4"] = {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": clip}}
    graph["5"] = {
        "class_type": "EmptySD3LatentImage" if flow else "EmptyLatentImage",
        "inputs": {"width": api.width, "height": api.height, "batch_size": 1},
    }
    seed = resolve_seed(api.seed)
    sampling = {
        "seed": seed,
        "steps": api.steps,
        "cfg": api.cfg_scale,
        "sampler_name": COMFY_SAMPLERS.get(sampler, "euler"),
        "scheduler": optional(api, "scheduler") or scheduler,
        "denoise": 1.0,
        "model": model,
        "positive": positive,
        "negative": ["4", 0],
        "latent_image": ["5", 0],
    }
    graph["6"] = {"class_type": "KSampler", "inputs": sampling}
    samples = ["6", 0]
    hires = optional(api, "hires")
    if hires is not None:
        graph["20"] = {
            "class_type": "LatentUpscaleBy",
            "inputs": {
                "upscale_method": "nearest-exact",
                "scale_by": get(hires, "scale", 2.0),
                "samples": samples,
            },
        }
        graph["21"] = {
            "class_type": "KSampler",
            "inputs": {
                **sampling,
                "steps": get(hires, "steps") or api.steps,
                "denoise": get(hires, "denoising_strength", 0.5),
                "latent_image": ["20", 0],
            },
        }
        samples = ["21", 0]
    vae_item = optional(api, "vae")
    if vae_item is not None:
        name = vae_file(vae_item, files).name
        graph["9"] = {"class_type": "VAELoader", "inputs": {"vae_name": name}}
        vae = ["9", 0]
    graph["7"] = {"class_type": "VAEDecode", "inputs": {"samples": samples, "vae": vae}}
    graph["8"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "diffagent", "images": ["7", 0]}}
    return graph


def comfyui_body(api: APICall, files: Files | None = None) -> dict[str, Any]:
    """What ``POST /prompt`` takes: ``{"prompt": graph}`` (a bare graph is refused with 400 "no prompt")."""
    return {"prompt": to_comfyui(api, files)}
