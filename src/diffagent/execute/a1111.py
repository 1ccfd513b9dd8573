"""AUTOMATIC1111 / Forge: the body of ``POST /sdapi/v1/txt2img``.

Since 1.9 the schedule is its own field (``"sampler_name": "DPM++ 2M", "scheduler": "Karras"``); older
servers only know the joined name, which :func:`join_sampler` gives back. LoRAs go into the prompt as
``<lora:FILE_STEM:W>`` tags, which is how AUTOMATIC1111 finds them in ``models/Lora``.
"""

from __future__ import annotations

from typing import Any

from ..filenames import safe_stem
from ..schema import APICall
from ._common import Files, get, model_file, optional, split_sampler, vae_file

__all__ = ["A1111_SCHEDULES", "join_sampler", "to_a1111"]

A1111_SCHEDULES = {"normal": "Automatic", "karras": "Karras", "exponential": "Exponential",
                   "sgm_uniform": "SGM Uniform"}  # fmt: skip
"""Our schedule key -> AUTOMATIC1111's ``scheduler`` label (``modules/sd_schedulers.py``)."""


def join_sampler(sampler_name: str, scheduler: str) -> str:
    """The pre-1.9 joined name (``DPM++ 2M Karras``) of a 1.9+ sampler and scheduler pair."""
    suffix = {"Karras": " Karras", "Exponential": " Exponential", "SGM Uniform": " SGMUniform"}
    return sampler_name + suffix.get(scheduler, "")


def _scheduler(api: APICall, schedule: str) -> str:
    """The ``scheduler`` label: the call's own where it names one (Flux: ``simple``), else the sampler's."""
    named = optional(api, "scheduler")
    if named:
        return {"simple": "Simple", "sgm_uniform": "SGM Uniform", "karras": "Karras"}.get(named, named)
    return A1111_SCHEDULES[schedule]


def lora_tags(api: APICall, files: Files | None) -> str:
    """``<lora:NAME:W>`` for each LoRA; NAME is a safe file stem, so no catalogue text can close the tag."""
    return " ".join(
        f"<lora:{safe_stem(model_file(lo.version_id, lo.name, files).name)}:{lo.weight:g}>"
        for lo in api.loras
    )


def to_a1111(api: APICall, files: Files | None = None) -> dict[str, Any]:
    """Body of ``POST /sdapi/v1/txt2img``, with hires fix and VAE when the call has them."""
    sampler, schedule = split_sampler(api.sampler)
    settings: dict[str, Any] = {
        "sd_model_checkpoint": model_file(api.checkpoint.version_id, api.checkpoint.name, files).name,
        "CLIP_stop_at_last_layers": api.clip_skip,
    }
    vae = optional(api, "vae")
    if vae is not None:
        settings["sd_vae"] = vae_file(vae, files).name
    body: dict[str, Any] = {
        "prompt": f"{api.prompt} {lora_tags(api, files)}".strip(),
        "negative_prompt": api.negative_prompt,
        "sampler_name": sampler,
        "scheduler": _scheduler(api, schedule),
        "steps": api.steps,
        "cfg_scale": api.cfg_scale,
        "width": api.width,
        "height": api.height,
        "seed": api.seed,
        "override_settings": settings,
        "override_settings_restore_afterwards": True,
    }
    guidance = optional(api, "guidance")
    if guidance is not None:  # Forge's "distilled CFG" (Flux); the sampler's own CFG stays at the call's 1
        body["distilled_cfg_scale"] = guidance
    hires = optional(api, "hires")
    if hires is not None:
        body.update(
            enable_hr=True,
            hr_scale=get(hires, "scale", 2.0),
            hr_upscaler=get(hires, "upscaler") or "Latent",
            denoising_strength=get(hires, "denoising_strength", 0.5),
            hr_second_pass_steps=get(hires, "steps") or 0,
        )
    return body
