"""The interface every agent implements, so the CLI, the service and `diffagent eval` treat them alike."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from ..schema import Answer

__all__ = ["Agent"]


class Agent(ABC):
    """Turns a prompt into an :class:`~diffagent.schema.Answer` naming only catalogue models."""

    name: ClassVar[str]

    @abstractmethod
    def select(self, prompt: str, k: int = 5) -> Answer:
        """The best API call for ``prompt`` and up to ``k`` ranked alternatives (the first is the answer)."""

    def select_batch(self, prompts: Sequence[str], k: int = 5) -> list[Answer]:
        """Answers in the order of ``prompts``; agents override this where batching is faster."""
        return [self.select(prompt, k) for prompt in prompts]
