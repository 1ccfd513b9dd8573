"""Turn an API call into what a generator runs: an AUTOMATIC1111 txt2img request, a ComfyUI workflow
(API format) or the arguments of a diffusers pipeline.

Only the mapping lives here; nothing is downloaded or generated. Sampler names are AUTOMATIC1111's, and
each generator spells them differently, so the tables below are the one place that translates them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..schema import APICall, normalize_sampler

__all__ = ["FORMATS", "download_url", "to_a1111", "to_comfyui", "to_diffusers", "to_payload"]

FORMATS = ("a1111", "comfyui", "diffusers")

_SCHEDULE_SUFFIXES = (" Karras", " Exponential", " SGMUniform")

# AUTOMATIC1111 sampler (schedule suffix removed) -> ComfyUI KSampler sampler_name.
_COMFY_SAMPLERS = {
    "Euler a": "euler_ancestral", "Euler": "euler", "LMS": "lms", "Heun": "heun", "DPM2": "dpm_2",
    "DPM2 a": "dpm_2_ancestral", "DPM++ 2S a": "dpmpp_2s_ancestral", "DPM++ 2M": "dpmpp_2m",
    "DPM++ SDE": "dpmpp_sde", "DPM++ 2M SDE": "dpmpp_2m_sde", "DPM++ 2M SDE Heun": "dpmpp_2m_sde",
    "DPM++ 3M SDE": "dpmpp_3m_sde", "DPM fast": "dpm_fast", "DPM adaptive": "dpm_adaptive",
    "DDIM": "ddim", "PLMS": "euler", "UniPC": "uni_pc", "LCM": "lcm", "DDPM": "ddpm", "Restart": "euler",
}  # fmt: skip

# AUTOMATIC1111 sampler (schedule suffix removed) -> diffusers scheduler class and its options.
_DIFFUSERS_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Heun": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun"},
    ),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    "DPM fast": ("DPMSolverSinglestepScheduler", {}),
    "DPM adaptive": ("DPMSolverSinglestepScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "Restart": ("EulerDiscreteScheduler", {}),
}


def download_url(version_id: int) -> str:
    """Civitai's download endpoint for a model version's primary file (a token may be needed)."""
    return f"https://civitai.com/api/download/models/{version_id}"


def _split_sampler(sampler: str) -> tuple[str, str]:
    """``("DPM++ 2M", "karras")`` from ``"DPM++ 2M Karras"``; schedule ``normal`` when none is named."""
    name = normalize_sampler(sampler) or sampler
    for suffix in _SCHEDULE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix.strip().lower().replace("sgmuniform", "sgm_uniform")
    return name, "normal"


Files = Mapping[int, str]
"""Version id -> file name of its primary file (``Store.primary_files``); generators load files by name."""


def _file_name(version_id: int, name: str, files: Files | None) -> str:
    """The catalogue's file name for a version, else one made from the model name."""
    if files and version_id in files:
        return files[version_id]
    return re.sub(r"[^\w.-]+", "_", name).strip("_") + ".safetensors"


def _stem(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0]


def _prompt_with_lora_tags(api: APICall, files: Files | None) -> str:
    tags = " ".join(
        f"<lora:{_stem(_file_name(lora.version_id, lora.name, files))}:{lora.weight:g}>" for lora in api.loras
    )
    return f"{api.prompt} {tags}".strip()


def to_a1111(api: APICall, files: Files | None = None) -> dict[str, Any]:
    """Body of ``POST /sdapi/v1/txt2img``; LoRAs as ``<lora:FILE:W>`` tags, as AUTOMATIC1111 names them."""
    return {
        "prompt": _prompt_with_lora_tags(api, files),
        "negative_prompt": api.negative_prompt,
        "sampler_name": api.sampler,
        "steps": api.steps,
        "cfg_scale": api.cfg_scale,
        "width": api.width,
        "height": api.height,
        "seed": api.seed,
        "override_settings": {
            "sd_model_checkpoint": _file_name(api.checkpoint.version_id, api.checkpoint.name, files),
            "CLIP_stop_at_last_layers": api.clip_skip,
        },
    }


def to_comfyui(api: APICall, files: Files | None = None) -> dict[str, Any]:
    """A ComfyUI workflow in API format (``POST /prompt`` as ``{"prompt": ...}``): checkpoint, LoRA chain,
    clip skip, text encoders, empty latent, KSampler, decode, save."""
    sampler, scheduler = _split_sampler(api.sampler)
    graph: dict[str, Any] = {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": _file_name(api.checkpoint.version_id, api.checkpoint.name, files)},
        }
    }
    model, clip = ["1", 0], ["1", 1]
    for number, lora in enumerate(api.loras, start=10):
        graph[str(number)] = {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": _file_name(lora.version_id, lora.name, files),
                "strength_model": lora.weight,
                "strength_clip": lora.weight,
                "model": model,
                "clip": clip,
            },
        }
        model, clip = [str(number), 0], [str(number), 1]
    graph["2"] = {
        "class_type": "CLIPSetLastLayer",
        "inputs": {"stop_at_clip_layer": -api.clip_skip, "clip": clip},
    }
    graph["3"] = {"class_type": "CLIPTextEncode", "inputs": {"text": api.prompt, "clip": ["2", 0]}}
    graph["4"] = {"class_type": "CLIPTextEncode", "inputs": {"text": api.negative_prompt, "clip": ["2", 0]}}
    graph["5"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": api.width, "height": api.height, "batch_size": 1},
    }
    graph["6"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": api.seed if api.seed >= 0 else 0,
            "steps": api.steps,
            "cfg": api.cfg_scale,
            "sampler_name": _COMFY_SAMPLERS.get(sampler, "euler"),
            "scheduler": scheduler,
            "denoise": 1.0,
            "model": model,
            "positive": ["3", 0],
            "negative": ["4", 0],
            "latent_image": ["5", 0],
        },
    }
    graph["7"] = {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}}
    graph["8"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "diffagent", "images": ["7", 0]}}
    return graph


def to_diffusers(api: APICall, files: Files | None = None) -> dict[str, Any]:
    """What a diffusers script needs: the pipeline class, single-file URLs, scheduler and call arguments.

    diffusers counts clip skip from 0 (A1111's 1 is diffusers' None, A1111's 2 is diffusers' 1).
    """
    from ..catalog import FAMILIES, family_spec

    sampler, schedule = _split_sampler(api.sampler)
    scheduler, options = _DIFFUSERS_SCHEDULERS.get(sampler, ("EulerDiscreteScheduler", {}))
    options = dict(options)
    if schedule == "karras":
        options["use_karras_sigmas"] = True
    elif schedule == "exponential":
        options["use_exponential_sigmas"] = True
    call: dict[str, Any] = {
        "prompt": api.prompt,
        "negative_prompt": api.negative_prompt or None,
        "num_inference_steps": api.steps,
        "guidance_scale": api.cfg_scale,
        "width": api.width,
        "height": api.height,
        "clip_skip": api.clip_skip - 1 or None,
    }
    return {
        "pipeline": (family_spec(api.checkpoint.base_model) or FAMILIES["SD1"]).pipeline,
        "checkpoint_url": download_url(api.checkpoint.version_id),
        "checkpoint_file": _file_name(api.checkpoint.version_id, api.checkpoint.name, files),
        "scheduler": {"class": scheduler, "options": options},
        "loras": [
            {
                "url": download_url(lora.version_id),
                "adapter_name": f"lora_{lora.version_id}",
                "weight": lora.weight,
            }
            for lora in api.loras
        ],
        "seed": api.seed if api.seed >= 0 else None,
        "call": call,
    }


def to_payload(api: APICall, fmt: str, files: Files | None = None) -> dict[str, Any]:
    """The payload for generator ``fmt`` (one of :data:`FORMATS`)."""
    builders = {"a1111": to_a1111, "comfyui": to_comfyui, "diffusers": to_diffusers}
    if fmt not in builders:
        raise ValueError(f"unknown payload format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return builders[fmt](api, files)
