"""AUTOMATIC1111's ``parameters`` text, written into every PNG diffagent makes.

It is what Civitai reads to link the resources used (``Model hash`` and ``Lora hashes``) and what
AUTOMATIC1111's "PNG Info" tab reads back, so an image can be remade from its file alone. The PNG chunk is
added without re-encoding the image: the pixels a generator returned stay byte for byte.
"""

from __future__ import annotations

import json
import struct
import zlib

from ... import __version__
from ...errors import DiffAgentError
from ...filenames import safe_stem
from ...schema import APICall
from .._common import Files, get, model_file, optional, vae_file
from ..a1111 import lora_tags

__all__ = ["infotext", "read_parameters", "with_parameters"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KEY = b"parameters"


def _quote(value: str) -> str:
    """A1111's quoting: values with a comma, colon or newline are written as JSON strings."""
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ",:\n") else value


def infotext(api: APICall, seed: int, files: Files | None = None) -> str:
    """The ``parameters`` text of an image made from ``api`` with ``seed`` (the seed actually used)."""
    checkpoint = model_file(api.checkpoint.version_id, api.checkpoint.name, files)
    fields: list[tuple[str, object]] = [
        ("Steps", api.steps),
        ("Sampler", api.sampler),
        ("CFG scale", f"{api.cfg_scale:g}"),
        ("Seed", seed),
        ("Size", f"{api.width}x{api.height}"),
    ]
    if checkpoint.autov2:
        fields.append(("Model hash", checkpoint.autov2))
    fields.append(("Model", safe_stem(checkpoint.name)))
    vae = optional(api, "vae")
    if vae is not None:
        fields.append(("VAE", safe_stem(vae_file(vae, files).name)))
    if api.clip_skip > 1:
        fields.append(("Clip skip", api.clip_skip))
    hires = optional(api, "hires")
    if hires is not None:
        fields += [
            ("Denoising strength", get(hires, "denoising_strength", 0.5)),
            ("Hires upscale", get(hires, "scale", 2.0)),
            ("Hires steps", get(hires, "steps") or 0),
            ("Hires upscaler", get(hires, "upscaler") or "Latent"),
        ]
    lora_hashes = []
    for lora in api.loras:
        found = model_file(lora.version_id, lora.name, files)
        digest = (found.autov3 or "")[:12] or found.autov2
        if digest:
            lora_hashes.append(f"{safe_stem(found.name)}: {digest}")
    if lora_hashes:
        fields.append(("Lora hashes", json.dumps(", ".join(lora_hashes), ensure_ascii=False)))
    fields.append(("Version", f"diffagent {__version__}"))
    prompt = f"{api.prompt} {lora_tags(api, files)}".strip()
    settings = ", ".join(
        f"{key}: {value if key == 'Lora hashes' else _quote(str(value))}" for key, value in fields
    )
    return f"{prompt}\nNegative prompt: {api.negative_prompt}\n{settings}"


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    if not png.startswith(_SIGNATURE):
        raise DiffAgentError("the generator returned something that is not a PNG image")
    chunks, at = [], len(_SIGNATURE)
    while at + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[at : at + 8])
        chunks.append((kind, png[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def _is_parameters(kind: bytes, data: bytes) -> bool:
    return kind in (b"tEXt", b"iTXt") and data.split(b"\0", 1)[0] == _KEY


def with_parameters(png: bytes, text: str) -> bytes:
    """``png`` with its ``parameters`` text replaced by ``text`` (tEXt when Latin-1 fits, else iTXt UTF-8)."""
    try:
        chunk = (b"tEXt", _KEY + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        chunk = (b"iTXt", _KEY + b"\0\0\0\0\0" + text.encode("utf-8"))
    out = [_SIGNATURE]
    for kind, data in _chunks(png):
        if _is_parameters(kind, data):
            continue
        if kind == b"IEND":
            out.append(_pack(*chunk))
        out.append(_pack(kind, data))
    return b"".join(out)


def _pack(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def read_parameters(png: bytes) -> str | None:
    """The ``parameters`` text of a PNG, or None."""
    for kind, data in _chunks(png):
        if _is_parameters(kind, data):
            body = data.split(b"\0", 1)[1]
            return body.decode("latin-1") if kind == b"tEXt" else body[4:].decode("utf-8")
    return None
