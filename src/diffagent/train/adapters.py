"""Which weights a training run updates: fresh LoRA adapters, or every weight for full fine-tuning."""

from __future__ import annotations

from typing import Any

import torch

from .config import TrainConfig

__all__ = ["make_trainable"]


def make_trainable(model: Any, config: TrainConfig) -> Any:
    """Wrap ``model`` in fresh LoRA adapters, or unfreeze every weight for full fine-tuning."""
    if hasattr(model, "peft_config"):  # an adapter model that keeps training its adapters
        return model
    if config.method == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
