"""Rewards: image scorers (CLIP score, ImageReward, HPS v2; PickScore held out), the unified metric over
them, the offline proxy reward of API calls, and the :class:`Reward` protocol the RRHF trainer calls.

The scorers need torch and transformers and are imported on first use, so that importing the proxy
reward (the one these machines can run) stays cheap. The image reward of RRHF candidates lives in the
submodules ``render`` (diffusers, one pipeline at a time), ``candidates`` (resumable shards of render-then-
score jobs, :class:`~.candidates.RenderedReward`) and ``ray_job`` (the same shards as a Ray Data job).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..extras import require
from .base import GeneratedImageReward, ImageLike, ImageScorer, Reward
from .proxy import NAME as PROXY_NAME
from .proxy import ProxyReward
from .unified import (
    HELD_OUT_SCORERS,
    UNIFIED_SCORERS,
    UNIFIED_VERSION,
    ReferenceStats,
    ScorerStats,
    UnifiedMetric,
    compute_reference_stats,
    unified_score,
)

__all__ = [
    "HELD_OUT_SCORERS",
    "PROXY_NAME",
    "UNIFIED_SCORERS",
    "UNIFIED_VERSION",
    "CLIPScorer",
    "GeneratedImageReward",
    "HPSv2Scorer",
    "ImageLike",
    "ImageRewardScorer",
    "ImageScorer",
    "PickScoreScorer",
    "ProxyReward",
    "ReferenceStats",
    "Reward",
    "ScorerStats",
    "UnifiedMetric",
    "compute_reference_stats",
    "load_scorer",
    "unified_score",
]

_LAZY = {
    "CLIPScorer": "clip",
    "PickScoreScorer": "clip",
    "HPSv2Scorer": "hps",
    "ImageRewardScorer": "imagereward",
}
# scorer name -> class name, for load_scorer
_SCORERS = {
    "clip": "CLIPScorer",
    "hpsv2": "HPSv2Scorer",
    "imagereward": "ImageRewardScorer",
    "pickscore": "PickScoreScorer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _folder_tokenizer(source: str) -> str | None:
    """The tokenizer kept beside weights in a local folder (a tokenizer folder or a CLIP BPE ``*.txt.gz``)."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return None
    if (folder / "tokenizer_config.json").is_file() or (folder / "vocab.txt").is_file():
        return str(folder)
    bpe = sorted(folder.glob("*.txt.gz"))
    return str(bpe[0]) if bpe else None


def load_scorer(name: str, source: str | None = None, **options: Any) -> ImageScorer:
    """The scorer ``name`` (clip, imagereward, hpsv2, pickscore) from a local path or hub name ``source``
    (each scorer's published weights when None); ``options`` go to its ``from_pretrained``.

    A local folder that also holds a tokenizer gives it to the scorer, so that a fully local set-up needs
    no Hub. Weights that cannot be had are one line naming the option to pass, never a traceback.
    """
    from ..errors import UserInputError

    if name not in _SCORERS:
        raise UserInputError(f"unknown scorer {name!r}; choose one of: {', '.join(_SCORERS)}")
    require("reward", f"the {name} scorer")
    cls = __getattr__(_SCORERS[name])
    if source is not None and "tokenizer" not in options and name != "clip":
        tokenizer = _folder_tokenizer(source)
        if tokenizer is not None:
            options["tokenizer"] = tokenizer
    try:
        return (
            cls.from_pretrained(source, **options) if source is not None else cls.from_pretrained(**options)
        )
    except UserInputError as exc:
        raise UserInputError(f"{name} scorer: {exc} (--{name} PATH)") from None
    except (OSError, ValueError) as exc:  # transformers / huggingface_hub: not found, or the Hub unreachable
        where = source or "its published Hub repository"
        raise UserInputError(
            f"cannot load the {name} scorer from {where} ({type(exc).__name__}; offline machines cannot "
            f"reach the Hub): pass --{name} PATH to a local folder holding its weights and tokenizer"
        ) from None
