"""Render API calls to images with diffusers, holding one pipeline at a time, for image-based rewards.

RRHF scores k candidate calls per instruction by the images they produce. Loading a checkpoint costs far
more than one image, so :meth:`DiffusersRenderer.render` takes all the calls of a batch, renders them in
order of checkpoint (each pipeline loads once) and gives the images back in the order of the calls. Each
call carries its own seed: :func:`seeded` sets one seed per instruction, so the candidates of an
instruction differ only by what the call itself changes.

Where a checkpoint comes from is the ``factory``'s business (a :data:`PipelineFactory`): this module ships
:func:`folder_pipeline_factory` (one diffusers pipeline folder per catalogue version id); the library's
single-file loader of ``diffagent generate`` plugs in the same way. The renderer sets the call's prompt,
negative prompt, steps, CFG and size; schedulers and LoRAs are the factory's (a call's sampler and LoRAs
make no difference to a pipeline that ignores them, which the report of a run should say).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..schema import APICall, Checkpoint

__all__ = ["DiffusersRenderer", "PipelineFactory", "folder_pipeline_factory", "instruction_seed", "seeded"]

PipelineFactory = Callable[[Checkpoint], Any]
"""A loaded diffusers text-to-image pipeline for a catalogue checkpoint."""


def instruction_seed(instruction: str, base: int = 0) -> int:
    """A seed fixed by the instruction text (CRC-32, stable across processes and machines) and ``base``."""
    return (zlib.crc32(instruction.encode("utf-8")) + base) % 2**32


def seeded(call: APICall, instruction: str, base: int = 0) -> APICall:
    """``call`` with the instruction's seed: candidates of one instruction then share their noise."""
    return call.model_copy(update={"seed": instruction_seed(instruction, base)})


def folder_pipeline_factory(root: str | Path, device: str | None = None) -> PipelineFactory:
    """Pipelines from ``root/VERSION_ID/`` (folders saved by ``pipeline.save_pretrained``), loaded offline."""
    root = Path(root)
    if not root.is_dir():
        raise UserInputError(f"no such checkpoints folder: {root}")

    def load(checkpoint: Checkpoint) -> Any:
        folder = root / str(checkpoint.version_id)
        if not (folder / "model_index.json").is_file():
            raise UserInputError(
                f"checkpoint {checkpoint.version_id} ({checkpoint.name}) is not in {root}: "
                f"save its diffusers pipeline as {folder}"
            )
        import torch
        from diffusers import DiffusionPipeline

        target = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if target == "cuda" else torch.float32
        pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(target)

    return load


class DiffusersRenderer:
    """Renders calls through pipelines from ``factory``, one pipeline in memory at a time.

    ``max_steps`` and ``max_side`` cap the steps and the longer side (kept a multiple of 8) for cheap
    reward runs; None renders the call as written. Images are ``H x W x 3`` uint8 arrays.
    """

    def __init__(
        self, factory: PipelineFactory, *, max_steps: int | None = None, max_side: int | None = None
    ) -> None:
        if max_side is not None and max_side < 8:
            raise UserInputError(f"max_side must be at least 8 pixels, got {max_side}")
        self.factory = factory
        self.max_steps = max_steps
        self.max_side = max_side
        self._held: tuple[int, Any] | None = None
        self.loads = 0

    def size(self, call: APICall) -> tuple[int, int]:
        """(width, height) to render: the call's, scaled down to ``max_side`` and to multiples of 8."""
        width, height = float(call.width), float(call.height)
        if self.max_side is not None and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            width, height = width * scale, height * scale
        return max(8, math.floor(width / 8) * 8), max(8, math.floor(height / 8) * 8)

    def pipeline(self, checkpoint: Checkpoint) -> Any:
        """The pipeline of ``checkpoint``; the one held before is released first."""
        if self._held is None or self._held[0] != checkpoint.version_id:
            self._held = None  # drop the old pipeline before loading the next
            self._held = (checkpoint.version_id, self.factory(checkpoint))
            self.loads += 1
        return self._held[1]

    def __call__(self, call: APICall) -> np.ndarray:
        """One image of ``call`` (its seed; a negative seed is refused: rewards must be reproducible)."""
        import torch

        if call.seed < 0:
            raise UserInputError("a call rendered for a reward needs a fixed seed (use render.seeded)")
        pipe = self.pipeline(call.checkpoint)
        width, height = self.size(call)
        steps = min(call.steps, self.max_steps) if self.max_steps is not None else call.steps
        generator = torch.Generator(device="cpu").manual_seed(call.seed)
        out = pipe(
            prompt=call.prompt,
            negative_prompt=call.negative_prompt or None,
            num_inference_steps=steps,
            guidance_scale=call.cfg_scale,
            width=width,
            height=height,
            generator=generator,
            output_type="np",
        )
        return (np.asarray(out.images[0]) * 255.0).round().clip(0, 255).astype(np.uint8)

    def render(self, calls: Sequence[APICall]) -> list[np.ndarray]:
        """Images of ``calls`` in their order, rendered grouped by checkpoint (first appearance first)."""
        first: dict[int, int] = {}
        for i, call in enumerate(calls):
            first.setdefault(call.checkpoint.version_id, i)
        order = sorted(range(len(calls)), key=lambda i: (first[calls[i].checkpoint.version_id], i))
        images: list[np.ndarray | None] = [None] * len(calls)
        for i in order:
            images[i] = self(calls[i])
        return images  # type: ignore[return-value]
