"""Run an API call: payloads per generator format behind one registry, and generation backends.

``to_payload(api, "comfyui")`` is what ``select --format comfyui`` prints; :mod:`.generate` sends it.
Payload modules are light (no torch); the diffusers backend imports diffusers only when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import UserInputError
from ..filenames import safe_file_name, safe_stem
from ..schema import APICall
from ._common import SEED_RANGE, VAE_FILE, Files, ModelFile, split_sampler
from .a1111 import to_a1111
from .comfyui import comfyui_body, to_comfyui
from .diffusers import to_diffusers

__all__ = [
    "FORMATS",
    "SEED_RANGE",
    "VAE_FILE",
    "Files",
    "ModelFile",
    "safe_file_name",
    "safe_stem",
    "split_sampler",
    "to_a1111",
    "to_comfyui",
    "to_diffusers",
    "to_payload",
]

_REGISTRY: dict[str, Callable[[APICall, Files | None], dict[str, Any]]] = {
    "a1111": to_a1111,
    "comfyui": comfyui_body,
    "diffusers": to_diffusers,
}
FORMATS = tuple(_REGISTRY)


def to_payload(api: APICall, fmt: str, files: Files | None = None) -> dict[str, Any]:
    """The payload for generator ``fmt`` (one of :data:`FORMATS`): what that generator's API takes."""
    if fmt not in _REGISTRY:
        raise UserInputError(f"unknown payload format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return _REGISTRY[fmt](api, files)
