"""The API call diffagent answers with, as fixed in DESIGN.md, and the sampler vocabulary it may use.

This module sits below every package (catalogue, bench, agents) so that all of them speak the same types.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

__all__ = [
    "KNOWN_SAMPLERS",
    "VAE",
    "APICall",
    "Alternative",
    "Answer",
    "Checkpoint",
    "Embedding",
    "Evidence",
    "Hires",
    "LoRA",
    "api_json_schema",
    "normalize_sampler",
]


class Checkpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: int = Field(description="Civitai model id")
    version_id: int = Field(description="Civitai model version id")
    name: str = Field(description="model name as in the catalogue")
    base_model: str = Field(description="base model family, e.g. 'SD 1.5', 'SDXL 1.0'")


class _Resource(BaseModel):
    """A catalogue version a call uses beside its checkpoint, by Civitai ids and name."""

    model_config = ConfigDict(extra="forbid")

    model_id: int
    version_id: int
    name: str


class LoRA(_Resource):
    weight: float = Field(description="strength, as in <lora:NAME:WEIGHT>")
    trigger_words: list[str] = Field(default_factory=list)


class Hires(BaseModel):
    """Hires fix: generate at the call's size, upscale by ``scale``, then refine (AUTOMATIC1111's
    ``enable_hr`` with ``hr_scale``, ``hr_upscaler``, ``denoising_strength``, ``hr_second_pass_steps``)."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(description="upscale factor of the first pass's size")
    upscaler: str = Field(
        description="upscaler name as AUTOMATIC1111 lists it, e.g. 'Latent', '4x-UltraSharp'"
    )
    denoising_strength: float
    steps: int = Field(0, description="second-pass steps; 0 means as many as the first pass")


class VAE(_Resource):
    """The VAE file a checkpoint version is published with (Civitai lists it among the version's files):
    the version is the checkpoint's, ``name`` the file's, as generators find it in their VAE folder."""

    name: str = Field(description="file name, e.g. 'vae-ft-mse-840000-ema-pruned.safetensors'")


class Embedding(_Resource):
    """A textual-inversion embedding of the catalogue that the prompt or negative prompt names."""

    trigger_words: list[str] = Field(default_factory=list, description="how the prompts name it")


_OPTIONAL_FIELDS = ("hires", "guidance", "scheduler", "vae", "embeddings")
"""Fields that DESIGN.md says are present only when they apply: left out of JSON when None (or empty)."""


class APICall(BaseModel):
    """One executable text-to-image request; ``sampler`` uses AUTOMATIC1111's names."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Checkpoint
    loras: list[LoRA] = Field(default_factory=list)
    prompt: str = Field(description="the prompt to send, trigger words added")
    negative_prompt: str = ""
    sampler: str
    steps: int
    cfg_scale: float
    width: int
    height: int
    clip_skip: int = 1
    seed: int = -1
    hires: Hires | None = Field(default=None, description="hires fix, when the evidence used it")
    guidance: float | None = Field(
        default=None, description="distilled guidance (Flux), beside a sampler CFG of 1; absent elsewhere"
    )
    scheduler: str | None = Field(
        default=None, description="noise schedule where the sampler name does not say it (Flux: simple)"
    )
    vae: VAE | None = Field(default=None, description="the VAE its checkpoint is published with")
    embeddings: list[Embedding] | None = Field(
        default=None, description="textual-inversion embeddings the prompts name (catalogue resources)"
    )

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Optional fields that do not apply are left out of the JSON, as DESIGN.md fixes it."""
        data = handler(self)
        for key in _OPTIONAL_FIELDS:
            if data.get(key) in (None, []):
                data.pop(key, None)
        return data


class Alternative(APICall):
    """A ranked alternative: an API call with the agent's score for it."""

    score: float


class Evidence(BaseModel):
    """A catalogue example behind an answer: a real sample image and how close its prompt is."""

    image_id: int
    model_id: int
    version_id: int
    prompt: str
    url: str | None = None
    similarity: float


class Answer(BaseModel):
    api: APICall
    alternatives: list[Alternative] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    low_confidence: bool = False
    unresolved_loras: list[str] = Field(
        default_factory=list,
        description="the user's <lora:NAME:W> tags the catalogue does not know: passed through in the prompt",
    )


def api_json_schema() -> dict[str, Any]:
    """JSON Schema of the API call, for clients that validate answers on their side."""
    return APICall.model_json_schema()


# AUTOMATIC1111 sampler names (with their scheduler suffixes) that some generator runs as such.
KNOWN_SAMPLERS: tuple[str, ...] = (
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
    "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE", "DPM fast", "DPM adaptive", "LMS Karras",
    "DPM2 Karras", "DPM2 a Karras", "DPM++ 2S a Karras", "DPM++ 2M Karras", "DPM++ SDE Karras",
    "DPM++ 2M SDE Karras", "DPM++ 2M SDE Exponential", "DPM++ 2M SDE Heun Karras",
    "DPM++ 2M SDE Heun Exponential", "DPM++ 3M SDE Karras", "DPM++ 3M SDE Exponential", "Restart",
    "DDIM", "PLMS", "UniPC", "LCM", "DDPM", "Euler SGMUniform", "DPM++ 2M SGMUniform",
)  # fmt: skip


def _sampler_key(name: str) -> str:
    key = name.strip().lower()
    key = re.sub(r"^k_", "", key)  # k-diffusion / old Invoke spelling: k_euler_a
    key = key.replace("dpmpp", "dpm++")  # ComfyUI spelling: dpmpp_2m
    key = re.sub(r"ancestral$", "a", key.replace("_", " "))  # dpmpp_2s_ancestral
    return re.sub(r"[\s\-]+", "", key)


_CANONICAL = {_sampler_key(name): name for name in KNOWN_SAMPLERS}


def normalize_sampler(name: str | None) -> str | None:
    """The AUTOMATIC1111 name of a sampler spelt any common way, or None when no generator knows it."""
    if not name or not isinstance(name, str):
        return None
    return _CANONICAL.get(_sampler_key(name))
