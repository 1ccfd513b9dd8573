"""Generate locally with diffusers (CPU or CUDA) from the user's own single-file checkpoints.

The steps, in order: the spec of :func:`diffagent.execute.to_diffusers`; the pipeline from the local
checkpoint file with its family's local config folder (no hub); the A1111 sampler's scheduler; each LoRA
from its local file with its weight; the VAE when the call names one; the seed; the call (clip skip
included); a hires second pass through img2img when asked. Pipelines are cached per checkpoint and config
within a process, so a batch of prompts loads each model once.

Left for later: A1111 ``(word:1.4)`` weighting and prompts past 77 tokens (they are sent as plain text and
cut by the tokenizer, as diffusers does).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ...schema import APICall
from .._common import Files, resolve_seed, without_vae
from ..diffusers import to_diffusers
from .base import GenerationError, Image
from .infotext import infotext

__all__ = ["generate_diffusers", "load_pipeline"]

_CACHE: dict[tuple[str, str], Any] = {}
_OWN_VAES: dict[int, Any] = {}
"""Pipeline id -> the VAE its checkpoint file brought, put back when a call names none."""


def _diffusers() -> Any:
    try:
        import diffusers
    except ImportError:
        raise GenerationError(
            "the diffusers backend requires the diffusers extra: pip install diffagent[diffusers]"
        ) from None
    return diffusers


def _local(item: dict[str, Any], what: str) -> str:
    if not item.get("path") or not Path(item["path"]).is_file():
        raise GenerationError(
            f"{what} {item['file']} is not installed: `diffagent library download {item['version_id']}`"
            " (or `diffagent library scan DIR` where it lies)"
        )
    return item["path"]


def load_pipeline(spec: dict[str, Any], config_dir: Path | None = None, device: str | None = None) -> Any:
    """The pipeline for a :func:`to_diffusers` spec from its local checkpoint file (cached)."""
    import torch

    diffusers = _diffusers()
    from .diffusers_configs import config_folder

    checkpoint = _local(spec["checkpoint"], "checkpoint")
    folder = str(config_dir or config_folder(spec["config"]))
    key = (checkpoint, folder)
    if key not in _CACHE:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if device == "cuda" else torch.float32
        pipeline_class = getattr(diffusers, spec["pipeline"])
        pipe = pipeline_class.from_single_file(
            checkpoint, config=folder, local_files_only=True, torch_dtype=dtype
        )
        _CACHE.clear()  # one model in memory at a time
        _OWN_VAES.clear()
        _CACHE[key] = pipe.to(device)
    return _CACHE[key]


def _set_scheduler(pipe: Any, scheduler: dict[str, Any]) -> None:
    diffusers = _diffusers()
    if scheduler["class"] == "DPMSolverSDEScheduler":
        try:
            import torchsde  # noqa: F401
        except ImportError:
            raise GenerationError(
                "DPM++ SDE requires torchsde, in the diffusers extra: pip install diffagent[diffusers]"
            ) from None
    pipe.scheduler = getattr(diffusers, scheduler["class"]).from_config(
        pipe.scheduler.config, **scheduler["options"]
    )


def _set_loras(pipe: Any, loras: list[dict[str, Any]]) -> None:
    if hasattr(pipe, "unload_lora_weights"):
        pipe.unload_lora_weights()
    if not loras:
        return
    for lora in loras:
        path = Path(_local(lora, "LoRA"))
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=lora["adapter_name"])
    pipe.set_adapters([lo["adapter_name"] for lo in loras], adapter_weights=[lo["weight"] for lo in loras])


def _set_vae(pipe: Any, vae: dict[str, Any] | None, folder: str) -> None:
    """The call's VAE on the (cached) pipeline, or the checkpoint's own when it names none."""
    own = _OWN_VAES.setdefault(id(pipe), pipe.vae)
    if vae is None:
        pipe.vae = own
        return
    diffusers = _diffusers()
    pipe.vae = diffusers.AutoencoderKL.from_single_file(
        _local(vae, "VAE"), config=folder, subfolder="vae", local_files_only=True, torch_dtype=own.dtype
    ).to(pipe.device)


def _set_embeddings(pipe: Any, embeddings: list[dict[str, Any]]) -> tuple[str, ...]:
    """The call's textual inversions on the (cached) pipeline, those of an earlier call taken off; one
    that is not installed, or that this pipeline cannot take, stays a plain word (and a note says so)."""
    if hasattr(pipe, "unload_textual_inversion"):
        pipe.unload_textual_inversion()
    notes = []
    for item in embeddings:
        path, tokens = item.get("path"), item.get("tokens") or []
        if not hasattr(pipe, "load_textual_inversion") or type(pipe).__name__.startswith("StableDiffusionXL"):
            notes.append(f"the embedding {item['file']} is not loaded: this pipeline takes SD 1.x / 2.x ones")
        elif not (path and Path(path).is_file()) or not tokens:
            notes.append(
                f"the embedding {item['file']} is not installed (`diffagent library download"
                f" {item['version_id']}`): its name stays a plain word"
            )
        else:
            pipe.load_textual_inversion(path, token=tokens[0])
    return tuple(notes)


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def generate_diffusers(
    api: APICall, files: Files | None, config_dir: Path | None = None, device: str | None = None
) -> list[Image]:
    """One image for ``api`` made here from the library's files."""
    import torch

    spec = to_diffusers(api, files)
    notes: tuple[str, ...] = ()
    vae = spec.get("vae")
    if vae is not None and not (vae.get("path") and Path(vae["path"]).is_file()):
        api, note = without_vae(
            api, f"it is not installed (`diffagent library download {vae['version_id']} --vae`)"
        )
        spec, notes = to_diffusers(api, files), (note,)
    pipe = load_pipeline(spec, config_dir, device)
    _set_scheduler(pipe, spec["scheduler"])
    _set_loras(pipe, spec["loras"])
    from .diffusers_configs import config_folder

    _set_vae(pipe, spec.get("vae"), str(config_dir or config_folder(spec["config"])))
    notes += _set_embeddings(pipe, spec.get("embeddings") or [])
    seed = resolve_seed(api.seed)
    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    call = {k: v for k, v in spec["call"].items() if v is not None}
    if "clip_skip" in call and spec["pipeline"] == "StableDiffusionPipeline":
        call = _skipped_embeddings(pipe, call)
    image = pipe(**call, generator=generator).images[0]
    hires = spec.get("hires")
    if hires is not None:
        image = _hires_pass(pipe, image, call, hires, seed)
    # with the VAE left out, the text says what ran, not what was asked
    return [Image(_png(image), seed, infotext(api, seed, files) if notes else None, notes)]


def _skipped_embeddings(pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
    """Clip skip for SD 1.x / 2.x done here: diffusers 0.42 reaches for ``text_encoder.text_model``, which
    transformers >= 5.6 no longer has. The hidden state ``clip_skip`` layers before the last, normalised by
    the final layer norm, as AUTOMATIC1111 does."""
    import torch

    skip = call["clip_skip"]
    encoder = getattr(pipe.text_encoder, "text_model", pipe.text_encoder)

    def embed(text: str) -> Any:
        if hasattr(pipe, "maybe_convert_prompt"):  # a multi-vector embedding's token becomes all of its
            text = pipe.maybe_convert_prompt(text, pipe.tokenizer)
        ids = pipe.tokenizer(
            text,
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(pipe.device)
        with torch.no_grad():
            hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-(skip + 1)]
            return encoder.final_layer_norm(hidden)

    rest = {k: v for k, v in call.items() if k not in ("prompt", "negative_prompt", "clip_skip")}
    return {
        **rest,
        "prompt_embeds": embed(call["prompt"]),
        "negative_prompt_embeds": embed(call.get("negative_prompt", "")),
    }


def _hires_pass(pipe: Any, image: Any, call: dict[str, Any], hires: dict[str, Any], seed: int) -> Any:
    """A1111's hires fix: upscale the first image, then denoise it again at the larger size."""
    import torch

    diffusers = _diffusers()
    img2img_class = (
        diffusers.StableDiffusionXLImg2ImgPipeline
        if type(pipe).__name__.startswith("StableDiffusionXL")
        else diffusers.StableDiffusionImg2ImgPipeline
    )
    img2img = img2img_class.from_pipe(pipe)
    width, height = (
        int(call["width"] * hires["scale"]) // 8 * 8,
        int(call["height"] * hires["scale"]) // 8 * 8,
    )
    second = {k: v for k, v in call.items() if k not in ("width", "height", "num_inference_steps")}
    return img2img(
        **second,
        image=image.resize((width, height)),
        strength=hires["denoising_strength"],
        num_inference_steps=max(1, round(hires["steps"] / max(hires["denoising_strength"], 0.01))),
        generator=torch.Generator(device=pipe.device).manual_seed(seed),
    ).images[0]
