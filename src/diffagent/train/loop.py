"""The optimisation loop both stages share: AdamW, warm-up then linear decay, clipping, resumable checkpoints.

Each step takes ``batch_size`` examples and accumulates their gradients over chunks of ``micro_batch``
examples: one ``batch_loss`` call (the mean loss of its examples) and one backward pass per chunk, weighted
by the chunk's share of the step. So the step's loss and gradient are the mean over its examples whatever
the chunking, up to float rounding: one example at a time (the default) suits a CPU, packed chunks keep a
GPU busy. The data order is a seeded permutation per epoch, so a resumed run sees exactly the examples the
interrupted one would have, whatever its micro-batch.
A checkpoint (trainable weights, optimizer, step, losses) goes to ``OUT/last-checkpoint`` every
``save_steps`` and at the end; ``resume`` continues from it, also towards a larger ``max_steps``.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from .._io import atomic_open
from ..errors import UserInputError
from .config import TrainConfig

__all__ = ["CHECKPOINT_DIR", "TrainResult", "train_loop"]

CHECKPOINT_DIR = "last-checkpoint"
T = TypeVar("T")
Progress = Callable[[float, float], None]


@dataclass
class TrainResult:
    steps: int
    examples: int
    wall_s: float
    losses: list[float] = field(default_factory=list)
    """Mean loss of each optimizer step, from step 1 (also across a resume)."""

    def summary(self) -> dict[str, Any]:
        head, tail = self.losses[:5], self.losses[-5:]
        return {
            "steps": self.steps,
            "examples": self.examples,
            "wall_s": round(self.wall_s, 1),
            "loss_first5": round(sum(head) / len(head), 4) if head else None,
            "loss_last5": round(sum(tail) / len(tail), 4) if tail else None,
        }


@functools.lru_cache(maxsize=2)
def _order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return tuple(order)


def _batch(n: int, step: int, batch_size: int, seed: int) -> list[int]:
    """Example indices of optimizer step ``step`` (0-based), walking seeded per-epoch permutations."""
    indices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n)
        indices.append(_order(n, seed, epoch)[offset])
    return indices


def train_loop(
    model: Any,
    examples: Sequence[T],
    batch_loss: Callable[[Any, Sequence[T]], torch.Tensor],
    config: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``examples``; ``batch_loss(model, chunk)`` is the mean loss of a chunk."""
    if not examples:
        raise UserInputError("no training examples")
    total = config.max_steps or math.ceil(len(examples) * config.epochs / config.batch_size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr(), weight_decay=config.weight_decay)
    warmup = max(1, round(total * config.warmup_ratio))

    def learning_rate(step: int) -> float:
        """Linear warm-up to the peak, then linear decay to zero at the last step."""
        scale = (step + 1) / warmup if step < warmup else (total - step) / max(1, total - warmup)
        return config.lr() * max(0.0, scale)

    checkpoint = out_dir / CHECKPOINT_DIR
    losses: list[float] = []
    start, spent = 0, 0.0
    if resume:
        if not (checkpoint / "state.json").is_file():
            raise UserInputError(f"nothing to resume: no checkpoint in {checkpoint}")
        state = json.loads((checkpoint / "state.json").read_text())
        weights = torch.load(checkpoint / "trainable.pt", map_location="cpu")
        with torch.no_grad():
            for name, parameter in zip(names, trainable, strict=True):
                parameter.copy_(weights[name])
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location="cpu"))
        start, losses, spent = state["step"], state["losses"], state["wall_s"]

    def save(step: int, wall: float) -> None:
        checkpoint.mkdir(parents=True, exist_ok=True)
        (checkpoint / "state.json").unlink(missing_ok=True)  # written last: marks a complete checkpoint
        torch.save(
            dict(zip(names, [p.detach().cpu() for p in trainable], strict=True)), checkpoint / "trainable.pt"
        )
        torch.save(optimizer.state_dict(), checkpoint / "optimizer.pt")
        with atomic_open(checkpoint / "state.json") as handle:
            json.dump({"step": step, "losses": losses, "wall_s": wall, "total": total}, handle)

    began = time.perf_counter()
    model.train()
    for step in range(start, total):
        optimizer.zero_grad(set_to_none=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        batch = _batch(len(examples), step, config.batch_size, config.seed)
        step_loss = 0.0
        for begin in range(0, len(batch), config.micro_batch):
            chunk = [examples[index] for index in batch[begin : begin + config.micro_batch]]
            loss = batch_loss(model, chunk) * len(chunk) / len(batch)
            loss.backward()
            step_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        losses.append(step_loss)
        done = step + 1
        if done % config.save_steps == 0 or done == total:
            save(done, spent + time.perf_counter() - began)
        if progress is not None:
            progress(done, total)
    model.eval()
    return TrainResult(
        steps=total,
        examples=min(len(examples), total * config.batch_size),
        wall_s=spent + time.perf_counter() - began,
        losses=losses,
    )
