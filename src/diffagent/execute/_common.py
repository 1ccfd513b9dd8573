"""What every payload format shares: the files an API call names, its sampler split, its seed."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..filenames import safe_file_name
from ..schema import APICall, normalize_sampler

__all__ = [
    "SEED_RANGE",
    "VAE_FILE",
    "Files",
    "ModelFile",
    "get",
    "model_file",
    "optional",
    "resolve_seed",
    "split_sampler",
    "vae_file",
    "without_vae",
]

SEED_RANGE = 2**32
"""Seeds drawn for ``seed: -1`` stay below this (what every generator accepts)."""

_SCHEDULE_SUFFIXES = (" Karras", " Exponential", " SGMUniform")


@dataclass(frozen=True)
class ModelFile:
    """A model file a payload names: its file name (made safe where it is used) and, when known, its path
    and hashes."""

    name: str
    path: Path | None = None
    sha256: str | None = None
    autov3: str | None = None
    """SHA256 of a safetensors file's tensor data; AUTOMATIC1111 writes its first 12 digits as a LoRA hash."""

    @property
    def autov2(self) -> str | None:
        """AUTOMATIC1111's short model hash (the first 10 hex digits of SHA256), as Civitai reads it."""
        return self.sha256[:10].lower() if self.sha256 else None


Files = Mapping[int | str, "str | ModelFile"]
"""Version id -> its file: a catalogue file name (``Store.primary_files``) or a library :class:`ModelFile`;
and under :data:`VAE_FILE`, the library's copy of the call's VAE."""

VAE_FILE = "vae"
"""The key of the call's VAE in :data:`Files`: its version is the checkpoint's, so it has no id of its own."""


def model_file(version_id: int, name: str, files: Files | None) -> ModelFile:
    """The file for a version, its name made safe; a name made from the model name when none is known."""
    found = (files or {}).get(version_id)
    if isinstance(found, ModelFile):
        return ModelFile(safe_file_name(found.name), found.path, found.sha256, found.autov3)
    if isinstance(found, str):
        return ModelFile(safe_file_name(found))
    return ModelFile(safe_file_name(f"{name}.safetensors"))


def vae_file(vae: Any, files: Files | None) -> ModelFile:
    """The file of the call's ``vae``: the library's copy when it has one, else the catalogue's name."""
    found = (files or {}).get(VAE_FILE)
    if isinstance(found, ModelFile):
        return ModelFile(safe_file_name(found.name), found.path, found.sha256, found.autov3)
    return ModelFile(safe_file_name(get(vae, "name", "") or "vae.safetensors", "vae.safetensors"))


def without_vae(api: APICall, why: str) -> tuple[APICall, str]:
    """The call without its VAE (the checkpoint's own decodes instead), and a line saying so."""
    name = get(api.vae, "name", "")
    note = f"the VAE {name} that {api.checkpoint.name} is published with is left out: {why}"
    return api.model_copy(update={"vae": None}), note


def split_sampler(sampler: str) -> tuple[str, str]:
    """``("DPM++ 2M", "karras")`` from ``"DPM++ 2M Karras"``; schedule ``normal`` when none is named."""
    name = normalize_sampler(sampler) or sampler
    for suffix in _SCHEDULE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix.strip().lower().replace("sgmuniform", "sgm_uniform")
    return name, "normal"


def resolve_seed(seed: int) -> int:
    """The seed to send: ``-1`` (random) becomes a fresh random seed, so that each run differs and the
    seed actually used can be written into the image's parameters."""
    return seed if seed >= 0 else secrets.randbelow(SEED_RANGE)


def optional(api: APICall, field: str) -> Any:
    """One of DESIGN's optional API-call fields (``hires``, ``vae``, ``embeddings``, ``guidance``), or None
    where the call has none; values may be models or plain dicts."""
    return getattr(api, field, None)


def get(item: Any, key: str, default: Any = None) -> Any:
    """``item[key]`` for a dict, ``item.key`` for a model: optional fields come as either."""
    return item.get(key, default) if isinstance(item, Mapping) else getattr(item, key, default)
