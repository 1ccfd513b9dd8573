"""What every generation backend returns, and the one error type they raise."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ...errors import DiffAgentError

__all__ = ["GenerationError", "Image", "http_client"]


class GenerationError(DiffAgentError):
    """The generator refused or failed; the message says what to change (a file to install, a sampler)."""


@dataclass(frozen=True)
class Image:
    """One generated image as PNG bytes, and the seed that made it (never -1)."""

    png: bytes
    seed: int
    parameters: str | None = None
    """The generator's own ``parameters`` text where it writes one (AUTOMATIC1111: it knows the hashes of
    the files it loaded); else diffagent writes it from the call."""
    notes: tuple[str, ...] = ()
    """What the backend left out of the call, and why (a VAE the generator does not have)."""


def http_client(url: str, read_timeout: float) -> httpx.Client:
    """A client for a generator server; certificates are loaded only for ``https`` (loading them costs
    about 75 ms, more than the rest of a local call)."""
    return httpx.Client(
        base_url=url, timeout=httpx.Timeout(30.0, read=read_timeout), verify=url.startswith("https:")
    )
