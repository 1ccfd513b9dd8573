"""diffusers: which pipeline and local config folder, which files, scheduler and call arguments.

``from_single_file`` and ``load_lora_weights`` take local files, not Civitai download URLs, so the spec
names each file (and its path once the library has it). The config folder is chosen per family because
the checkpoint file alone does not say it: SD 2.x 512 checkpoints are epsilon-prediction, the 768 ones
v-prediction, and loading one with the other's config gives noise.
"""

from __future__ import annotations

from typing import Any

from ..catalog import architecture, family
from ..schema import APICall
from ._common import Files, ModelFile, get, model_file, optional, split_sampler, vae_file

__all__ = ["DIFFUSERS_SCHEDULERS", "PIPELINES", "pipeline_config", "to_diffusers"]

# AUTOMATIC1111 sampler (schedule suffix removed) -> diffusers scheduler class and its options.
DIFFUSERS_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
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

PIPELINES = {"SD1": "StableDiffusionPipeline", "SD2-512": "StableDiffusionPipeline",
             "SD2-768-v": "StableDiffusionPipeline", "SDXL": "StableDiffusionXLPipeline",
             "SD3": "StableDiffusion3Pipeline", "FLUX": "FluxPipeline"}  # fmt: skip
"""Config key -> pipeline class."""


def pipeline_config(base_model: str | None) -> str:
    """The config key of a Civitai base model (its family's architecture; SD 2.x split by prediction)."""
    fam = family(base_model)
    if fam == "SD2-768":
        return "SD2-768-v"
    if fam == "SD2":
        return "SD2-512"
    group = architecture(base_model) or "SD1"
    return {"Flux1": "FLUX"}.get(group, group)


def _file(item: ModelFile, version_id: int) -> dict[str, Any]:
    return {"version_id": version_id, "file": item.name, "path": str(item.path) if item.path else None}


def to_diffusers(api: APICall, files: Files | None = None) -> dict[str, Any]:
    """What :mod:`diffagent.execute.generate.diffusers` runs, as JSON.

    diffusers counts clip skip from 0 (A1111's 1 is diffusers' None, A1111's 2 is diffusers' 1).
    """
    sampler, schedule = split_sampler(api.sampler)
    scheduler, options = DIFFUSERS_SCHEDULERS.get(sampler, ("EulerDiscreteScheduler", {}))
    options = dict(options)
    if schedule == "karras":
        options["use_karras_sigmas"] = True
    elif schedule == "exponential":
        options["use_exponential_sigmas"] = True
    config = pipeline_config(api.checkpoint.base_model)
    spec: dict[str, Any] = {
        "pipeline": PIPELINES.get(config, "DiffusionPipeline"),
        "config": config,
        "checkpoint": _file(
            model_file(api.checkpoint.version_id, api.checkpoint.name, files), api.checkpoint.version_id
        ),
        "scheduler": {"class": scheduler, "options": options},
        "loras": [
            {
                **_file(model_file(lora.version_id, lora.name, files), lora.version_id),
                "adapter_name": f"lora_{lora.version_id}",
                "weight": lora.weight,
            }
            for lora in api.loras
        ],
        "embeddings": [
            {**_file(model_file(e.version_id, e.name, files), e.version_id), "tokens": e.trigger_words}
            for e in api.embeddings or ()
        ],
        "seed": api.seed if api.seed >= 0 else None,
        "call": {
            "prompt": api.prompt,
            "negative_prompt": api.negative_prompt or None,
            "num_inference_steps": api.steps,
            "guidance_scale": api.cfg_scale,
            "width": api.width,
            "height": api.height,
            "clip_skip": api.clip_skip - 1 or None,
        },
    }
    vae = optional(api, "vae")
    if vae is not None:
        spec["vae"] = _file(vae_file(vae, files), get(vae, "version_id"))
    hires = optional(api, "hires")
    if hires is not None:
        spec["hires"] = {
            "scale": get(hires, "scale", 2.0),
            "denoising_strength": get(hires, "denoising_strength", 0.5),
            "steps": get(hires, "steps") or api.steps,
        }
    return spec
