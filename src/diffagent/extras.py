"""Optional dependencies, grouped as the package's extras, and the one-line error when one is missing.

The core install (catalogue, DABench, baselines, the default agent, payloads) needs numpy, scipy,
scikit-learn and LightGBM only. Heavier features check their extra where they are used, so that a user
without it gets ``requires the llm extra: pip install 'diffagent[llm]'`` instead of a traceback.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtra

__all__ = ["EXTRAS", "require"]

EXTRAS: dict[str, tuple[str, ...]] = {
    "llm": ("torch", "transformers", "peft", "gguf"),
    "reward": ("torch", "transformers", "safetensors", "huggingface_hub", "PIL"),
    "diffusers": ("torch", "diffusers", "PIL", "safetensors"),
    "ray": ("ray", "pandas", "pyarrow"),
    "serve": ("fastapi", "uvicorn"),
}
"""Extra -> the modules it provides (as imported), matching ``[project.optional-dependencies]``."""


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtra` when a module of ``extra`` is not installed; ``feature`` names the user's
    request in the message (``the LLM agent``, ``diffagent serve``)."""
    missing = [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingExtra(
            f"{feature} requires the {extra} extra ({', '.join(missing)} missing): "
            f"pip install 'diffagent[{extra}]'"
        )
