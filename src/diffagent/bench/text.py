"""Prompt text: cleaning generator syntax out of instructions, and the near-duplicate test behind `novel`."""

from __future__ import annotations

import itertools
import re

__all__ = ["NEAR_DUPLICATE_JACCARD", "clean_prompt", "group_key", "lora_tags", "shingles"]

# <lora:NAME:W>, <lyco:...>, <hypernet:...>, <locon:...>: extra-network syntax that names a resource.
_RESOURCE_TAG = re.compile(r"<\s*(lora|lyco|locon|loha|hypernet)\s*:[^>]*>", re.IGNORECASE)
_LORA_TAG = re.compile(
    r"<\s*(?:lora|lyco|locon|loha)\s*:\s*([^:>]+?)\s*(?::\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)[^>]*)?>",
    re.I,
)
_WORD = re.compile(r"[a-z0-9]+")

NEAR_DUPLICATE_JACCARD = 0.5
"""Two prompts are near-duplicates when the Jaccard index of their word-bigram sets is at least this."""


def clean_prompt(prompt: str) -> str:
    """The prompt without resource tags, whitespace normalised and stray separators removed."""
    text = _RESOURCE_TAG.sub(" ", prompt)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*,(\s*,)+", ",", text)  # ", ," left behind by a removed tag
    return text.strip(" ,")


def lora_tags(prompt: str) -> list[tuple[str, float | None]]:
    """``(name, weight)`` of every ``<lora:NAME:W>``-style tag, in order (weight None when absent)."""
    return [(m.group(1), float(m.group(2)) if m.group(2) else None) for m in _LORA_TAG.finditer(prompt)]


def group_key(instruction: str) -> str:
    """What 'the same prompt' means for leak-free splits: lower-cased words, punctuation ignored."""
    return " ".join(_WORD.findall(instruction.lower()))


def shingles(instruction: str) -> frozenset[str]:
    """Word bigrams of the normalised prompt (the word itself for one-word prompts)."""
    words = _WORD.findall(instruction.lower())
    if len(words) < 2:
        return frozenset(words)
    return frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))
