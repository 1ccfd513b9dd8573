"""Training configurations, TRL style: one dataclass per stage, each field with its help text.

This module imports nothing heavy, so the command line can read defaults and help texts without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UserInputError
from ..llm.config import DEFAULT_BASE_MODEL
from ..llm.config import option as _opt

METHODS = ("lora", "full")
"""What a run trains: PEFT LoRA adapters on every linear layer, or every weight."""

REWARDS = ("proxy", "unified")
"""What RRHF ranks responses by: the offline proxy of API calls, or the unified metric of their images."""

__all__ = [
    "METHODS",
    "REWARDS",
    "RRHFConfig",
    "SFTConfig",
    "TrainConfig",
]


@dataclass
class TrainConfig:
    """Optimisation settings shared by both stages."""

    out: str = _opt("", "name of the trained model, saved under DIFFAGENT_HOME/models/NAME")
    method: str = _opt("lora", "`lora` (PEFT adapters on every linear layer) or `full` (every weight)")
    max_steps: int | None = _opt(None, "stop after this many optimizer steps (default: `epochs` passes)")
    epochs: int = _opt(1, "passes over the data when --max-steps is not given")
    limit: int | None = _opt(None, "use only N instructions (a seeded random sample of the split)")
    batch_size: int = _opt(8, "instructions per optimizer step (gradients accumulate over micro-batches)")
    micro_batch: int = _opt(
        1,
        "pack N instructions into one forward pass: faster on a GPU, costs memory; the default 1 runs them "
        "one at a time, which suits a CPU; the loss and gradients are the same either way",
    )
    learning_rate: float | None = _opt(None, "peak learning rate (default: 2e-4 for lora, 2e-5 for full)")
    warmup_ratio: float = _opt(0.1, "share of the steps spent warming the learning rate up linearly")
    weight_decay: float = _opt(0.0, "AdamW weight decay")
    max_grad_norm: float = _opt(1.0, "gradients are clipped to this global norm")
    lora_r: int = _opt(16, "LoRA rank")
    lora_alpha: int = _opt(32, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = _opt(0.05, "dropout on the LoRA branch")
    save_steps: int = _opt(25, "write a resumable checkpoint every N steps")
    seed: int = _opt(0, "seed of the data order, the sample and the LoRA initialisation")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserInputError(f"unknown --method {self.method!r}: use {' or '.join(METHODS)}")
        if self.micro_batch < 1:
            raise UserInputError(
                f"--micro-batch must be at least 1 (instructions per forward pass), got {self.micro_batch}"
            )

    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.method == "lora" else 2e-5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SFTConfig(TrainConfig):
    """Stage 1: supervised fine-tuning on DABench's train split, loss on the answer tokens only."""

    out: str = _opt("sft", "name of the trained model, saved under DIFFAGENT_HOME/models/NAME")
    base_model: str = _opt(
        DEFAULT_BASE_MODEL, "Hugging Face causal LM: a name, a local folder or a trained NAME"
    )


@dataclass
class RRHFConfig(TrainConfig):
    """Stage 2: RRHF on reward-ranked candidate calls, starting from a stage-1 model."""

    out: str = _opt("rrhf", "name of the trained model, saved under DIFFAGENT_HOME/models/NAME")
    source: str = _opt("sft", "trained model to start from (its prompt format is kept)")
    samples: int = _opt(2, "constrained samples of the source model per instruction")
    temperature: float = _opt(1.0, "sampling temperature of those samples")
    alternatives: int = _opt(3, "retriever candidates added as responses")
    ft_weight: float = _opt(1.0, "weight of the cross-entropy on the best response beside the ranking loss")
    learning_rate: float | None = _opt(None, "peak learning rate (default: 5e-5 for lora, 5e-6 for full)")
    reward: str = _opt(
        "proxy",
        "`proxy` (the offline proxy of API calls) or `unified` (CLIP + ImageReward + HPS v2 of the images "
        "each call generates; needs --checkpoints and the scorers' weights)",
    )
    render_steps: int | None = _opt(None, "cap the denoising steps of reward images (default: the call's)")
    render_side: int | None = _opt(
        None, "cap the longer side of reward images in pixels (default: the call's)"
    )
    shard_size: int = _opt(16, "calls per shard of the reward job; finished shards are kept and resumed")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward not in REWARDS:
            raise UserInputError(f"unknown --reward {self.reward!r}: use {' or '.join(REWARDS)}")

    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-5 if self.method == "lora" else 5e-6
