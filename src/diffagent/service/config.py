"""What the service allows and how it protects itself: every limit in one dataclass, read from the env.

The defaults suit a service exposed to a network: bodies and prompts bounded, a per-client rate limit,
requests that give up after a while. ``DIFFAGENT_API_KEY`` and ``DIFFAGENT_CORS_ORIGINS`` are read here
and nowhere else.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields, replace

from ..errors import UserInputError
from ..execute.generate import BACKENDS

__all__ = ["ServiceConfig"]


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and switches of one service process (``from_env`` reads the ``DIFFAGENT_*`` variables)."""

    api_key: str | None = None
    """Bearer key every request but ``/health`` and the page's files must carry (env DIFFAGENT_API_KEY)."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a browser; none by default (env DIFFAGENT_CORS_ORIGINS)."""
    agent: str = "default"
    """The agent a request gets when it names none (env DIFFAGENT_SERVE_AGENT)."""
    max_body_bytes: int = 64 * 1024
    """Largest body of ``POST /select`` (413 above it)."""
    max_batch_body_bytes: int = 4 * 1024 * 1024
    """Largest body of ``POST /select/batch`` (413 above it)."""
    max_prompt_chars: int = 4000
    """Longest prompt (422 above it); Civitai's longest real prompts are about 3,000 characters."""
    max_batch_items: int = 1000
    """Most prompts in one batch (422 above it)."""
    batch_chunk: int = 64
    """Prompts answered between two checks that the client is still there and the deadline not passed."""
    request_timeout_s: float = 30.0
    """A request still unanswered after this long gets 503 and its remaining work is dropped."""
    body_timeout_s: float = 10.0
    """A body still incomplete after this long gets 408 (a slow or stalled client)."""
    idle_timeout_s: float = 5.0
    """A connection with no request in progress is closed after this long (env DIFFAGENT_IDLE_TIMEOUT)."""
    max_concurrency: int = 256
    """Connections and requests in progress at once; beyond it, 503 (uvicorn's ``limit_concurrency``)."""
    rate_per_s: float = 20.0
    """Tokens each client regains per second (env DIFFAGENT_RATE_LIMIT; 0 turns the limit off)."""
    rate_burst: int = 40
    """Requests a client may send at once before it has to wait (env DIFFAGENT_RATE_BURST)."""
    trust_forwarded_for: bool = False
    """Rate-limit by ``X-Forwarded-For`` (only behind a proxy that sets it; env DIFFAGENT_TRUST_PROXY)."""
    revision_check_s: float = 5.0
    """How often the catalogue revision is compared with the one the agents were built from."""
    max_agents: int = 4
    """Agents (name and filter combinations) kept loaded; the least recently used goes first. Each filter
    combination of the default agent holds its own copy of the index (a server with one default agent on
    the whole dump holds about 500 MB: docs/benchmarks.md)."""
    generate_backend: str | None = None
    """The backend behind ``POST /generate``: ``a1111``, ``comfyui`` or ``diffusers`` (env
    DIFFAGENT_GENERATE); without one the route answers 404 and the page shows no "generate" button."""
    generator_url: str | None = None
    """Where the a1111 or comfyui server listens (env DIFFAGENT_GENERATOR_URL; default their own defaults)."""
    generate_timeout_s: float = 600.0
    """A generation still running after this long gets 503 (the generator may still finish it)."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and (not math.isfinite(value) or value < 0):
                raise UserInputError(f"service setting {item.name} must be a number >= 0, not {value}")
        if self.generate_backend is not None and self.generate_backend not in BACKENDS:
            raise UserInputError(f"the generate backend must be one of: {', '.join(BACKENDS)}")
        if self.generator_url is not None:
            if self.generate_backend in (None, "diffusers"):
                raise UserInputError("a generator URL is for the a1111 and comfyui backends")
            if not re.match(r"^https?://[^\s/]+", self.generator_url):
                raise UserInputError("the generator URL must start with http:// or https://")
        if self.api_key is not None and not self.api_key.strip():
            raise UserInputError("DIFFAGENT_API_KEY is set but empty; unset it or give it a value")

    @classmethod
    def from_env(cls, **overrides: object) -> ServiceConfig:
        """The defaults, then the ``DIFFAGENT_*`` environment variables, then ``overrides``."""
        env = os.environ
        values: dict[str, object] = {}
        if "DIFFAGENT_API_KEY" in env:
            values["api_key"] = env["DIFFAGENT_API_KEY"]
        origins = env.get("DIFFAGENT_CORS_ORIGINS", "")
        values["cors_origins"] = tuple(o.strip() for o in origins.split(",") if o.strip())
        if env.get("DIFFAGENT_SERVE_AGENT"):
            values["agent"] = env["DIFFAGENT_SERVE_AGENT"]
        for name, key in (
            ("generate_backend", "DIFFAGENT_GENERATE"),
            ("generator_url", "DIFFAGENT_GENERATOR_URL"),
        ):
            if env.get(key):
                values[name] = env[key]
        values["trust_forwarded_for"] = env.get("DIFFAGENT_TRUST_PROXY", "") in ("1", "true", "yes")
        for name, key, kind in (
            ("rate_per_s", "DIFFAGENT_RATE_LIMIT", float),
            ("rate_burst", "DIFFAGENT_RATE_BURST", int),
            ("idle_timeout_s", "DIFFAGENT_IDLE_TIMEOUT", float),
        ):
            if env.get(key):
                try:
                    values[name] = kind(env[key])
                except ValueError:
                    raise UserInputError(f"{key} must be a number, not {env[key]!r}") from None
        return replace(cls(**values), **overrides)  # type: ignore[arg-type]
