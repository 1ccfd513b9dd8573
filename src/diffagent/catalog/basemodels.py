"""Base-model families: which checkpoints a LoRA can run on, and the image sizes each family expects.

Civitai's ``baseModel`` strings grow every few months (``SD 1.5 LCM``, ``SDXL Turbo``, ``Pony``,
``Illustrious``, ``Flux.1 D`` ...). A LoRA runs on checkpoints of its own family only; ``Other`` and
unseen names map to no family, so nothing can be claimed about them.
"""

from __future__ import annotations

import re

__all__ = ["compatible", "default_size", "family", "is_few_step"]

# Checked in order; the first pattern that matches a lower-cased base model name wins.
_FAMILIES: tuple[tuple[str, str], ...] = (
    (r"^sd ?1(\.\d)?\b", "SD1"),
    (r"^sd ?2(\.\d)?\b", "SD2"),
    (r"^(sdxl|pony|illustrious|noobai|playground v2)", "SDXL"),
    (r"^sd ?3", "SD3"),
    (r"^flux", "FLUX"),
    (r"^(svd|stable video)", "SVD"),
    (r"^stable cascade", "Cascade"),
    (r"^(pixart|hunyuan|kolors|lumina|aura ?flow|wan|ltx|hidream|cogvideo|mochi)", "other-arch"),
)

_SIZES = {"SD1": (512, 768), "SD2": (768, 768), "SDXL": (832, 1216), "SD3": (1024, 1024), "FLUX": (896, 1152)}


def family(base_model: str | None) -> str | None:
    """The family of a Civitai ``baseModel`` string, or None when unknown (``Other``, missing, new)."""
    if not base_model:
        return None
    name = base_model.strip().lower()
    for pattern, fam in _FAMILIES:
        if re.match(pattern, name):
            return fam if fam != "other-arch" else name
    return None


def compatible(lora_base: str | None, checkpoint_base: str | None) -> bool:
    """Whether a LoRA of ``lora_base`` can be applied to a checkpoint of ``checkpoint_base``.

    Unknown families are not claimed incompatible: only two known, different families are.
    """
    a, b = family(lora_base), family(checkpoint_base)
    return a is None or b is None or a == b


def default_size(base_model: str | None) -> tuple[int, int]:
    """A safe (width, height) for the family when no example says otherwise: SD 1.x at 512x768 etc."""
    return _SIZES.get(family(base_model) or "SD1", (512, 768))


def is_few_step(base_model: str | None, name: str = "") -> bool:
    """Turbo / Lightning / LCM / Hyper / Schnell checkpoints need few steps and a low CFG."""
    text = f"{base_model or ''} {name}".lower()
    return bool(re.search(r"\b(turbo|lightning|lcm|hyper|schnell)\b", text))
