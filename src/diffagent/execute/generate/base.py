"""What every generation backend returns, and the one error type they raise."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import DiffAgentError

__all__ = ["GenerationError", "Image"]


class GenerationError(DiffAgentError):
    """The generator refused or failed; the message says what to change (a file to install, a sampler)."""


@dataclass(frozen=True)
class Image:
    """One generated image as PNG bytes, and the seed that made it (never -1)."""

    png: bytes
    seed: int
