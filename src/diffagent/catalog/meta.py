"""Normalise Civitai's image ``meta`` (AUTOMATIC1111 infotext, only partly cleaned) in one place.

Keys come spelt several ways (``"Clip skip"`` / ``clipSkip``), numbers arrive as strings, ``Size`` is
``"WxH"``, and any key may be missing, null or of an unexpected type. Everything downstream reads
:class:`GenParams` and never the raw dict.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["GenParams", "Resource", "normalize_hash", "parse_meta", "unwrap_meta"]

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_INT = re.compile(r"^\s*[-+]?[0-9]{1,20}\s*$")  # longer strings go through float (and overflow)


@dataclass(frozen=True)
class Resource:
    """A resource the image says it used: the checkpoint (``model``), a ``lora`` or a ``hypernet``."""

    type: str
    name: str | None = None
    hash: str | None = None
    weight: float | None = None
    version_id: int | None = None
    """The Civitai model version, where the image names it (``civitaiResources``, AIR URNs)."""


@dataclass
class GenParams:
    prompt: str | None = None
    negative_prompt: str | None = None
    sampler: str | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    clip_skip: int | None = None
    model_hash: str | None = None
    model_name: str | None = None
    resources: list[Resource] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first(meta: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = meta.get(key)
        if value is not None and value != "":
            return value
    return None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _to_int(value: Any) -> int | None:
    # Integers and integer strings are taken exactly (a float loses seeds above 2**53).
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INT.match(value):
        number = int(value)
    else:
        real = _to_float(value)
        if real is None or real != int(real):
            return None
        number = int(real)
    return number if abs(number) < 2**63 else None  # SQLite integers are 64-bit


def _to_str(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text or None


def normalize_hash(value: Any) -> str | None:
    """Upper-case hex of a file hash (AutoV1 / CRC32 8 digits, AutoV2 10, AutoV3 12, SHA256 / BLAKE3 64);
    None for anything that is not hexadecimal."""
    text = _to_str(value)
    if text is None or not _HEX.match(text):
        return None
    return text.upper()


def _size(meta: dict[str, Any]) -> tuple[int | None, int | None]:
    size = _to_str(meta.get("Size"))
    if size:
        match = re.match(r"^\s*(\d{1,9})\s*[xX×]\s*(\d{1,9})\s*$", size)  # no side has ten digits
        if match:
            return int(match.group(1)), int(match.group(2))
    return _to_int(meta.get("width")), _to_int(meta.get("height"))


# Civitai's resource kinds, spelt as the A1111 ``resources`` list spells them (``model`` is the checkpoint).
_KINDS = {"checkpoint": "model", "lycoris": "lora", "locon": "lora", "dora": "lora", "embedding": "embed"}
_AIR = re.compile(r"^urn:air:[^:]+:(?P<type>[^:]+):civitai:(?P<model>\d+)@(?P<version>\d+)", re.I)


def _kind(value: Any) -> str | None:
    text = _to_str(value)
    return _KINDS.get(text.lower(), text.lower()) if text else None


def _positive_id(value: Any) -> int | None:
    number = _to_int(value)
    return number if number is not None and 0 < number < 2**53 else None


def _resources(meta: dict[str, Any]) -> list[Resource]:
    """Every resource the meta names: ``resources`` (A1111: name, hash, weight), ``civitaiResources``
    (Civitai's generator: modelVersionId), ``additionalResources`` (AIR URNs) and the ``hashes`` map."""
    out: list[Resource] = []
    for item in _dicts(meta.get("resources")):
        kind = _kind(item.get("type"))
        if kind is not None:
            out.append(
                Resource(kind, _to_str(item.get("name")), normalize_hash(item.get("hash")),
                         _to_float(item.get("weight")))
            )  # fmt: skip
    for item in _dicts(meta.get("civitaiResources")):
        kind, version = _kind(item.get("type")), _positive_id(item.get("modelVersionId"))
        if kind is not None and version is not None:
            weight = _to_float(_first(item, "weight", "strength"))
            out.append(Resource(kind, _to_str(item.get("modelVersionName")), None, weight, version))
    for item in _dicts(meta.get("additionalResources")):
        found = _AIR.match(_to_str(item.get("name")) or "")
        version = _positive_id(found.group("version")) if found else None
        if found and version is not None:
            weight = _to_float(_first(item, "strength", "weight"))
            kind = _kind(item.get("type")) or _kind(found.group("type"))
            out.append(Resource(kind or "lora", None, None, weight, version))
    hashes = meta.get("hashes")
    named = {r.name.lower() for r in out if r.name}
    for key, value in hashes.items() if isinstance(hashes, dict) else ():
        kind, _, name = str(key).partition(":")
        digest = normalize_hash(value)
        if kind == "lora" and name and digest and name.lower() not in named:
            out.append(Resource("lora", name, digest))
    return out


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def unwrap_meta(meta: Any) -> dict[str, Any] | None:
    """The generation meta of an image: legacy look-ups nest it as ``{"id": ..., "meta": {...}}``."""
    if not isinstance(meta, dict):
        return None
    inner = meta.get("meta")
    if isinstance(inner, dict) and "prompt" not in meta:
        return inner
    return meta


def _model_hash(meta: dict[str, Any]) -> str | None:
    hashes = meta.get("hashes")
    return normalize_hash(hashes.get("model")) if isinstance(hashes, dict) else None


def parse_meta(meta: Any) -> GenParams:
    """Parse one image's ``meta``; never raises, unknown or malformed values become None."""
    meta = unwrap_meta(meta)
    if meta is None:
        return GenParams()
    width, height = _size(meta)
    steps = _to_int(_first(meta, "steps", "Steps"))
    cfg = _to_float(_first(meta, "cfgScale", "CFG scale", "cfg_scale"))
    clip_skip = _to_int(_first(meta, "Clip skip", "clipSkip", "clip_skip"))
    return GenParams(
        prompt=_to_str(meta.get("prompt")),
        negative_prompt=_to_str(_first(meta, "negativePrompt", "Negative prompt")),
        sampler=_to_str(_first(meta, "sampler", "Sampler")),
        steps=steps if steps is not None and steps > 0 else None,
        cfg_scale=cfg if cfg is not None and cfg >= 0 else None,
        seed=_to_int(_first(meta, "seed", "Seed")),
        width=width if width and width > 0 else None,
        height=height if height and height > 0 else None,
        clip_skip=clip_skip if clip_skip is not None and clip_skip > 0 else None,
        model_hash=normalize_hash(_first(meta, "Model hash", "modelHash")) or _model_hash(meta),
        model_name=_to_str(meta.get("Model")),
        resources=_resources(meta),
    )
