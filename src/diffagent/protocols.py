"""The interfaces the layers meet at: agents answer prompts, rewards score calls, long work reports progress.

Here, in the base layer, so that the bench harness and the trainers can take any agent or reward without
importing the packages that implement them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, runtime_checkable

from .schema import Answer, APICall

__all__ = ["Agent", "Progress", "Reward"]

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called as long work advances (the command line draws a bar from it)."""


class Agent(ABC):
    """Turns a prompt into an :class:`~diffagent.schema.Answer` naming only catalogue models."""

    name: ClassVar[str]

    @abstractmethod
    def select(self, prompt: str, k: int = 5) -> Answer:
        """The best API call for ``prompt`` and up to ``k`` ranked alternatives (the first is the answer)."""

    def select_batch(self, prompts: Sequence[str], k: int = 5) -> list[Answer]:
        """Answers in the order of ``prompts``; agents override this where batching is faster."""
        return [self.select(prompt, k) for prompt in prompts]

    def close(self) -> None:  # noqa: B027 (most agents hold nothing to release)
        """Release what the agent holds beyond memory (worker processes); it answers no more after."""


@runtime_checkable
class Reward(Protocol):
    """The reward of API calls for one instruction, as the RRHF trainer and the bench consume it.

    ``reference`` is the ground-truth call when one is known (DABench pairs); rewards that need no
    reference ignore it. ``name`` goes into every report, so a reader knows which reward was used.
    """

    name: str

    def score_calls(
        self, instruction: str, calls: Sequence[APICall], reference: APICall | None = None
    ) -> list[float]: ...
