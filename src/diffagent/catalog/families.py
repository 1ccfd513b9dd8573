"""Base-model families: the one place that knows SD 1.x, SD 2.x, SDXL, Pony, Illustrious, Flux ...

Civitai labels every version with a ``baseModel`` string (``SD 1.5``, ``SDXL Lightning``, ``Pony``,
``Flux.1 D`` ...; about a hundred today, more every few months). This module maps each string to a
:class:`Family` and says what follows from it: native size and aspect buckets, the settings the family is
run with and the bounds a user would still run, which LoRAs work on which checkpoints, what each
generator needs (diffusers pipeline, ComfyUI loaders), and the few-step variants (Turbo, Lightning, Hyper,
LCM, Schnell) that need few steps and a low CFG. Strings it does not know map to no family, and nothing is
claimed about them. Everything else in diffagent asks here instead of hard-coding any of it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FAMILIES",
    "Compatibility",
    "Family",
    "Recipe",
    "architecture",
    "compatibility",
    "compatible",
    "default_size",
    "family",
    "family_spec",
    "is_few_step",
    "recipe",
    "reported_cfg",
    "settle",
    "single_file_config",
    "size_ok",
    "snap_size",
    "variant",
]

Compatibility = Literal["full", "partial", "none", "unknown"]
Size = tuple[int, int]


@dataclass(frozen=True)
class Recipe:
    """The settings a family (or a few-step variant of it) is run with, and the range users still run."""

    sampler: str
    steps: int
    cfg_scale: float
    steps_range: tuple[int, int]
    cfg_range: tuple[float, float]
    scheduler: str | None = None
    """Set where the sampler name alone does not say it (Flux: ``simple``)."""
    guidance: float | None = None
    """Distilled guidance (Flux); the sampler's CFG stays at ``cfg_scale``."""

    def steps_for(self, sampler: str | None) -> tuple[int, int]:
        """``steps_range`` for ``sampler``: one that runs the model twice a step (DPM++ SDE, DPM++ 2S a,
        DPM2, Heun) gets there in about half the steps, so its lower bound is half (DPM++ SDE Karras at 7
        steps is a creator-recommended setting on 3.5 % of DABench test pairs)."""
        low, high = self.steps_range
        if sampler in TWO_EVALUATION_SAMPLERS:
            low = max(1, -(-low // 2))
        return low, high


TWO_EVALUATION_SAMPLERS = frozenset({
    "Heun", "DPM2", "DPM2 a", "DPM2 Karras", "DPM2 a Karras",
    "DPM++ 2S a", "DPM++ 2S a Karras", "DPM++ SDE", "DPM++ SDE Karras",
})  # fmt: skip
"""A1111 names of the samplers that evaluate the model twice per step."""


@dataclass(frozen=True)
class Family:
    """What a base-model family needs from a text-to-image call."""

    name: str
    group: str
    """LoRAs run fully within a family and partially between families of one group (SDXL / Pony / ...)."""
    native: int
    """The side of the square the family was trained at."""
    buckets: tuple[Size, ...]
    """Landscape (or square) training sizes; portrait sizes are these mirrored."""
    area: tuple[float, float]
    """Megapixels a single pass is still run at, without hires fix."""
    recipe: Recipe
    clip_skip: int = 1
    negative: bool = True
    """False where the family ignores negative prompts (distilled Flux)."""
    prediction: Literal["epsilon", "v_prediction", "flow"] = "epsilon"
    pipeline: str = "StableDiffusionPipeline"
    """The diffusers pipeline class for a single-file checkpoint."""
    comfy_loader: Literal["checkpoint", "unet"] = "checkpoint"
    """``unet``: Civitai files of this family are often the diffusion model alone (UNETLoader + CLIP)."""
    few_step: Recipe | None = None
    """Settings of the family's few-step variants (Turbo, Lightning, Hyper, LCM)."""
    default_sizes: dict[str, Size] = field(default_factory=dict)
    """(width, height) by orientation: ``square``, ``portrait``, ``landscape``."""
    clip_skip_fixed: bool = False
    """The family is always run at ``clip_skip`` (Civitai's generator forces 2 for Pony / Illustrious /
    NoobAI resources), whatever a sample image says; otherwise the evidence decides (SD 1.5: 1 or 2)."""
    prompt_prefix: tuple[str, ...] = ()
    """Quality tags the family was trained to expect in front of the prompt (Pony V6: the score tags);
    kept where the user wrote them and added where the prompt has none of them."""
    diffusers_config: str | None = None
    """The Hugging Face repository whose config ``from_single_file(..., config=...)`` takes for a
    Civitai checkpoint of this family (SD 2 512 and 768-v differ; Flux files need the Flux repo)."""
    comfy_text_encoders: tuple[str, ...] = ()
    """With ``comfy_loader == "unet"``: the text-encoder files of the ``DualCLIPLoader`` (its ``type`` is
    :attr:`comfy_clip_type`), and :attr:`comfy_vae` for the ``VAELoader``."""
    comfy_clip_type: str | None = None
    comfy_vae: str | None = None


_SD_RECIPE = Recipe("DPM++ 2M Karras", 25, 7.0, (10, 60), (3.0, 12.0))
_SD_FEW = Recipe("Euler a", 6, 2.0, (2, 12), (1.0, 3.0))
_SDXL_RECIPE = Recipe("DPM++ 2M Karras", 30, 7.0, (10, 60), (3.0, 12.0))
_ANIME_XL_RECIPE = Recipe("Euler a", 28, 6.0, (12, 60), (3.0, 10.0))
_XL_BUCKETS: tuple[Size, ...] = ((1024, 1024), (1152, 896), (1216, 832), (1344, 768), (1536, 640))
_SD1_BUCKETS: tuple[Size, ...] = ((512, 512), (768, 512), (640, 512), (704, 512))
_SD2_768_BUCKETS: tuple[Size, ...] = ((768, 768), (1024, 768), (960, 640))


def _sizes(square: Size, portrait: Size) -> dict[str, Size]:
    return {"square": square, "portrait": portrait, "landscape": (portrait[1], portrait[0])}


_XL_SIZES = _sizes((1024, 1024), (832, 1216))
_SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
_SDXL_REPO = "stabilityai/stable-diffusion-xl-base-1.0"

FAMILIES: dict[str, Family] = {
    fam.name: fam
    for fam in (
        Family("SD1", "SD1", 512, _SD1_BUCKETS, (0.19, 0.66), _SD_RECIPE, few_step=_SD_FEW,
               default_sizes=_sizes((512, 512), (512, 768)), diffusers_config=_SD15_REPO),
        Family("SD2", "SD2", 512, _SD1_BUCKETS, (0.19, 0.66), _SD_RECIPE, few_step=_SD_FEW,
               default_sizes=_sizes((512, 512), (512, 768)),
               diffusers_config="stabilityai/stable-diffusion-2-1-base"),
        Family("SD2-768", "SD2", 768, _SD2_768_BUCKETS, (0.4, 1.05), _SD_RECIPE, prediction="v_prediction",
               few_step=_SD_FEW, default_sizes=_sizes((768, 768), (640, 960)),
               diffusers_config="stabilityai/stable-diffusion-2-1"),
        Family("SDXL", "SDXL", 1024, _XL_BUCKETS, (0.75, 1.35), _SDXL_RECIPE,
               pipeline="StableDiffusionXLPipeline", few_step=_SD_FEW, default_sizes=_XL_SIZES,
               diffusers_config=_SDXL_REPO),
        Family("Pony", "SDXL", 1024, _XL_BUCKETS, (0.75, 1.35), _ANIME_XL_RECIPE, clip_skip=2,
               pipeline="StableDiffusionXLPipeline", few_step=_SD_FEW, default_sizes=_XL_SIZES,
               clip_skip_fixed=True, prompt_prefix=("score_9", "score_8_up", "score_7_up"),
               diffusers_config=_SDXL_REPO),
        Family("Illustrious", "SDXL", 1024, _XL_BUCKETS, (0.75, 1.6), _ANIME_XL_RECIPE, clip_skip=2,
               pipeline="StableDiffusionXLPipeline", few_step=_SD_FEW, default_sizes=_XL_SIZES,
               clip_skip_fixed=True, diffusers_config=_SDXL_REPO),
        Family("NoobAI", "SDXL", 1024, _XL_BUCKETS, (0.75, 1.6), _ANIME_XL_RECIPE, clip_skip=2,
               pipeline="StableDiffusionXLPipeline", few_step=_SD_FEW, default_sizes=_XL_SIZES,
               clip_skip_fixed=True, diffusers_config=_SDXL_REPO),
        Family("SD3", "SD3", 1024, _XL_BUCKETS, (0.75, 1.6),
               Recipe("Euler", 28, 4.5, (15, 60), (2.0, 9.0), scheduler="sgm_uniform"),
               prediction="flow", pipeline="StableDiffusion3Pipeline",
               few_step=Recipe("Euler", 8, 1.0, (2, 12), (1.0, 2.0), scheduler="sgm_uniform"),
               default_sizes=_XL_SIZES, diffusers_config="stabilityai/stable-diffusion-3.5-large"),
        Family("Flux1", "Flux1", 1024, _XL_BUCKETS, (0.6, 1.6),
               Recipe("Euler", 28, 1.0, (15, 50), (1.0, 1.0), scheduler="simple", guidance=3.5),
               negative=False, prediction="flow", pipeline="FluxPipeline", comfy_loader="unet",
               few_step=Recipe("Euler", 4, 1.0, (1, 8), (1.0, 1.0), scheduler="simple"),
               default_sizes=_sizes((1024, 1024), (896, 1152)),
               diffusers_config="black-forest-labs/FLUX.1-dev",
               comfy_text_encoders=("clip_l.safetensors", "t5xxl_fp16.safetensors"), comfy_clip_type="flux",
               comfy_vae="ae.safetensors"),
    )
}  # fmt: skip

# Checked in order against the lower-cased ``baseModel``; the first match wins. Families without an
# entry in FAMILIES are known architectures diffagent makes no generation claims for.
_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^sd ?1(\.\d)?\b", "SD1"),
    (r"^sd ?2(\.\d)?( ?768|.*\bv\b)", "SD2-768"),
    (r"^sd ?2(\.\d)?\b", "SD2"),
    (r"^pony ?v ?7", "AuraFlow"),  # Pony V7 is trained on AuraFlow: SDXL add-ons do not load on it
    (r"^pony", "Pony"),
    (r"^illustrious", "Illustrious"),
    (r"^noob ?ai", "NoobAI"),
    (r"^(sdxl|sd ?xl|playground v2)", "SDXL"),
    (r"^sd ?3", "SD3"),
    (r"^flux\.?1", "Flux1"),
    (r"^flux\.?2", "Flux2"),
    (r"^chroma", "Chroma"),
    (r"^(svd|stable video)", "SVD"),
    (r"^stable cascade", "Cascade"),
    (r"^hidream", "HiDream"),
    (r"^kolors", "Kolors"),
    (r"^qwen", "Qwen"),
    (r"^aura ?flow", "AuraFlow"),
    (r"^pixart", "PixArt"),
    (r"^hunyuan ?video", "Video"),
    (r"^hunyuan", "Hunyuan"),
    (r"^z ?image", "ZImage"),
    # generators Civitai runs as a hosted service: versions without a checkpoint anyone can load
    (r"^(imagen|veo|sora|openai|gpt|nano ?banana|seedream|seedance|kling|vidu|mini ?max|grok)", "Hosted"),
    (r"^lumina", "Lumina"),
    (r"^(wan|ltx|cogvideo|mochi)", "Video"),
)

_FEW_STEP = re.compile(r"\b(turbo|lightning|lcm|hyper|schnell|dmd2?|[48] ?steps?)\b")


@functools.lru_cache(maxsize=4096)
def family(base_model: str | None) -> str | None:
    """The family name of a Civitai ``baseModel`` string, or None when unknown (``Other``, missing, new)."""
    if not base_model:
        return None
    name = " ".join(base_model.strip().lower().split())
    for pattern, fam in _PATTERNS:
        if re.match(pattern, name):
            return fam
    return None


def architecture(base_model: str | None) -> str | None:
    """The family's group (SDXL for Pony and Illustrious, SD2 for both SD 2.x kinds), else its family."""
    fam = family(base_model)
    spec = FAMILIES.get(fam) if fam else None
    return spec.group if spec else fam


def family_spec(base_model: str | None) -> Family | None:
    """The :class:`Family` of a ``baseModel`` string, where diffagent knows how the family is run."""
    fam = family(base_model)
    return FAMILIES.get(fam) if fam else None


def variant(base_model: str | None, name: str = "") -> str | None:
    """The few-step variant named by the base model or the checkpoint's name (``lightning``, ``lcm`` ...)."""
    if re.match(r"^flux\.?1 ?s\b", " ".join((base_model or "").lower().split())):
        return "schnell"  # Civitai's string for FLUX.1 [schnell]
    found = _FEW_STEP.search(f"{base_model or ''} {name}".lower())
    if not found:
        return None
    word = found.group(1)
    return "schnell" if word == "schnell" else "few-step" if word[0].isdigit() else word


def is_few_step(base_model: str | None, name: str = "") -> bool:
    """Turbo / Lightning / LCM / Hyper / Schnell checkpoints need few steps and a low CFG."""
    return variant(base_model, name) is not None


@functools.lru_cache(maxsize=4096)  # asked for each alternative of each answer, several times over
def recipe(base_model: str | None, name: str = "") -> Recipe:
    """The settings for a checkpoint of ``base_model`` named ``name`` (few-step variants included).

    An unknown family gets SD 1.5's settings: the safest guess for a generator, never a claim about it.
    """
    spec = family_spec(base_model) or FAMILIES["SD1"]
    kind = variant(base_model, name)
    if kind and spec.few_step is not None:
        if kind == "lcm":
            return Recipe("LCM", 6, 2.0, (2, 12), (1.0, 3.0))
        return spec.few_step
    return spec.recipe


def compatibility(lora_base: str | None, checkpoint_base: str | None) -> Compatibility:
    """How well a LoRA trained on ``lora_base`` runs on a checkpoint of ``checkpoint_base``.

    ``full`` within a family; ``partial`` between families of one group (an SDXL LoRA on a Pony or
    Illustrious checkpoint, as Civitai marks them); ``none`` across architectures; ``unknown`` when either
    family is unknown.
    """
    a, b = family(lora_base), family(checkpoint_base)
    if a is None or b is None:
        return "unknown"
    if a == b:
        return "full"
    spec_a, spec_b = FAMILIES.get(a), FAMILIES.get(b)
    if spec_a and spec_b and spec_a.group == spec_b.group:
        return "partial"
    return "none"


def compatible(lora_base: str | None, checkpoint_base: str | None) -> bool:
    """Whether a LoRA may be offered on the checkpoint at all (anything but a known mismatch)."""
    return compatibility(lora_base, checkpoint_base) != "none"


def default_size(base_model: str | None, orientation: str = "portrait") -> Size:
    """A (width, height) the family runs well at for ``orientation`` (square, portrait, landscape)."""
    spec = family_spec(base_model) or FAMILIES["SD1"]
    return spec.default_sizes.get(orientation) or spec.default_sizes["portrait"]


def size_ok(base_model: str | None, width: int, height: int) -> bool:
    """Whether a single pass at this size is what the family is run with (unknown families: any size)."""
    spec = family_spec(base_model)
    if spec is None:
        return True
    low, high = spec.area
    megapixels = width * height / 1e6
    short, long = sorted((width, height))
    return low <= megapixels <= high and long <= 2.5 * short + 1


def snap_size(base_model: str | None, width: int, height: int) -> Size:
    """The family's bucket nearest in aspect ratio to ``width`` x ``height`` (kept when it already fits)."""
    spec = family_spec(base_model)
    if spec is None or (size_ok(base_model, width, height) and width % 8 == 0 and height % 8 == 0):
        return width, height
    aspect = width / max(height, 1)
    options = [*spec.buckets, *((h, w) for w, h in spec.buckets)]
    return min(options, key=lambda wh: abs(wh[0] / wh[1] - aspect))


def single_file_config(base_model: str | None, name: str = "") -> str | None:
    """The diffusers config repository for a single-file checkpoint (FLUX.1 schnell and SD 3.5 Medium
    differ from their family's default), or None for a family diffagent knows no pipeline for."""
    spec = family_spec(base_model)
    if spec is None:
        return None
    base = " ".join((base_model or "").lower().split())
    if spec.name == "Flux1" and variant(base_model, name) == "schnell":
        return "black-forest-labs/FLUX.1-schnell"
    if spec.name == "SD3" and "medium" in base:
        return "stabilityai/stable-diffusion-3.5-medium"
    return spec.diffusers_config


def reported_cfg(base_model: str | None, name: str, cfg_scale: float) -> tuple[float, float | None]:
    """``(cfg_scale, guidance)`` of the CFG an image reports: Civitai's generator and Forge write a distilled
    family's guidance as its CFG (Flux dev images say ``cfgScale: 3.5`` and ran the sampler at 1), so a
    value outside the family's single CFG is its guidance; anything else is a CFG as it stands."""
    spec = family_spec(base_model)
    settings = recipe(base_model, name)
    low, high = settings.cfg_range
    if spec is None or settings.guidance is None or low <= cfg_scale <= high:
        return cfg_scale, None
    return low, cfg_scale


def _with_prefix(prompt: str, prefix: tuple[str, ...]) -> str:
    """``prompt`` led by ``prefix`` unless it already carries any of those tags (the user's order stays)."""
    lowered = prompt.lower()
    if not prefix or any(tag in lowered for tag in prefix):
        return prompt
    return ", ".join([*prefix, prompt]) if prompt else ", ".join(prefix)


def settle(base_model: str | None, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The family's rules applied to an agent's ``prompt, negative_prompt, sampler, steps, cfg_scale,
    width, height, clip_skip``: a copy with ``guidance`` and ``scheduler`` added (None where they do not
    apply).

    Evidence from sample images decides sampler, steps and CFG (clamping them to the recipe's range cost
    DABench test 0.04 of ``params``: 5% of real images run outside it); the family decides what evidence
    cannot: a size snapped to the nearest bucket when a single pass would not run well at it, clip skip
    fixed where the family is always run at one (Pony, Illustrious, NoobAI: 2), the quality prefix the
    family expects (Pony's score tags), no negative prompt where the family ignores it (distilled Flux),
    and a distilled family's one CFG (Flux: 1, the guidance apart).
    Unknown families are left as they are: nothing is claimed about them.
    """
    out = dict(params)
    out.setdefault("guidance", None)
    out.setdefault("scheduler", None)
    spec = family_spec(base_model)
    if spec is None:
        return out
    settings = recipe(base_model, name)
    cfg_low, cfg_high = settings.cfg_range
    if cfg_low == cfg_high:  # distilled (Flux): the sampler runs at one CFG; dev's guidance goes apart
        out["cfg_scale"] = float(cfg_low)
    out["width"], out["height"] = snap_size(base_model, int(out["width"]), int(out["height"]))
    if spec.clip_skip_fixed:
        out["clip_skip"] = spec.clip_skip
    if not spec.negative:
        out["negative_prompt"] = ""
    out["prompt"] = _with_prefix(str(out.get("prompt", "")), spec.prompt_prefix)
    out["guidance"] = settings.guidance if out.get("guidance") is None else out["guidance"]
    out["scheduler"] = settings.scheduler if out.get("scheduler") is None else out["scheduler"]
    return out
