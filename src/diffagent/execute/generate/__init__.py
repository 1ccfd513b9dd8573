"""Generate images for an API call on a backend, and write them as PNGs that carry their parameters.

Backends are looked up by name and imported on use: ``a1111`` and ``comfyui`` talk HTTP (httpx only);
``diffusers`` runs locally and needs the ``diffusers`` extra.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from pathlib import Path

from ...errors import UserInputError
from ...schema import APICall
from .._common import Files
from .base import GenerationError, Image
from .files import resolve_files
from .infotext import infotext, read_parameters, with_parameters

__all__ = [
    "BACKENDS",
    "DEFAULT_URLS",
    "GenerationError",
    "Image",
    "generate",
    "infotext",
    "notes_of",
    "png_with_parameters",
    "read_parameters",
    "resolve_files",
    "run_backend",
    "with_parameters",
    "write_images",
]

_REGISTRY = {
    "diffusers": "diffagent.execute.generate.diffusers:generate_diffusers",
    "a1111": "diffagent.execute.generate.a1111:generate_a1111",
    "comfyui": "diffagent.execute.generate.comfyui:generate_comfyui",
}
BACKENDS = tuple(_REGISTRY)
DEFAULT_URLS = {"a1111": "http://127.0.0.1:7860", "comfyui": "http://127.0.0.1:8188"}
"""Where AUTOMATIC1111 / Forge and ComfyUI listen when started with their defaults."""


def run_backend(api: APICall, backend: str, files: Files | None, url: str | None = None) -> list[Image]:
    """The images backend ``backend`` makes for ``api``; ``url`` for the HTTP backends."""
    if backend not in _REGISTRY:
        raise UserInputError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    module, function = _REGISTRY[backend].split(":")
    run = getattr(importlib.import_module(module), function)
    if backend == "diffusers":
        if url is not None:
            raise UserInputError("--url is for the a1111 and comfyui backends; diffusers runs here")
        return run(api, files)
    return run(api, files, (url or DEFAULT_URLS[backend]).rstrip("/"))


def png_with_parameters(api: APICall, image: Image, files: Files | None) -> bytes:
    """The image's PNG carrying its ``parameters`` text: the generator's own where it wrote one, else
    written from the call."""
    return with_parameters(image.png, image.parameters or infotext(api, image.seed, files))


def notes_of(images: Sequence[Image]) -> list[str]:
    """What the backend left out of the call, each line once (every image of a call says the same)."""
    return list(dict.fromkeys(note for image in images for note in image.notes))


def write_images(api: APICall, images: Sequence[Image], files: Files | None, out_dir: Path) -> list[Path]:
    """Write each image as ``out_dir/diffagent-TIME-SEED.png`` with its ``parameters`` text; never
    overwrites a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    paths = []
    for image in images:
        data = png_with_parameters(api, image, files)
        for n in range(1000):
            path = out_dir / f"diffagent-{stamp}-{image.seed}{f'-{n}' if n else ''}.png"
            try:
                with path.open("xb") as handle:
                    handle.write(data)
                break
            except FileExistsError:
                continue
        paths.append(path)
    return paths


def generate(
    api: APICall, backend: str, files: Files | None, out_dir: Path, url: str | None = None
) -> list[Path]:
    """Generate with ``backend`` and write the PNGs; returns their paths."""
    return write_images(api, run_backend(api, backend, files, url), files, out_dir)
