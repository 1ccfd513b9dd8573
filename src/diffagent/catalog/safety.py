"""How explicit a model is and whether it depicts a real person, derived once per model at import.

Every model in the 2023 dump carries ``nsfw: false``, so Civitai's own flag filters nothing; what a
model is made for shows in its tags, its name and the ratings of its example images. The level uses
the scale of today's API (``nsfwLevel``: 1 PG, 2 PG-13, 4 R, 8 X):

- 8 (X): an explicit tag (``nsfw``, ``nude``, ``porn``, ``hentai``, ``xxx`` ...) or such a word in the name,
  or Civitai's own ``nsfw: true``;
- 4 (R): most of its example images (more than half, of at least two) are rated above ``None``;
- 2 (PG-13): a suggestive tag (``sexy``, ``lingerie`` ...) or a quarter of its images above ``None``;
- 1 (PG): anything else.

A crawl that has the API's integer ``nsfwLevel`` (a bit mask) raises the level to its highest bit.
Models at :data:`UNSAFE_LEVEL` or above, and real-person models (``poi``, or tagged ``celebrity`` /
``real person``), are left out of answers unless the user asks for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "EXPLICIT_TAGS",
    "PERSON_TAGS",
    "SUGGESTIVE_TAGS",
    "UNSAFE_LEVEL",
    "asks_explicit",
    "is_person",
    "nsfw_level",
]

UNSAFE_LEVEL = 4
"""Models at this level or above are explicit for a safe default."""

EXPLICIT_TAGS = frozenset(
    {
        "nsfw", "nude", "nudes", "nudity", "naked", "porn", "pornography", "hentai", "xxx", "sex",
        "erotic", "erotica", "explicit", "lewd", "nipples", "pussy", "penis", "genitals", "ahegao",
        "uncensored", "fetish",
    }
)  # fmt: skip
SUGGESTIVE_TAGS = frozenset(
    {"sexy", "lingerie", "bikini", "underwear", "boobs", "breasts", "cleavage", "swimsuit", "pinup", "ecchi"}
)
PERSON_TAGS = frozenset({"celebrity", "celebrities", "real person", "real people", "politician"})

_EXPLICIT_NAME = re.compile(r"(porn|hentai|nsfw|nude|naked|lewd|erotic|\bxxx|\bsex\b|\bsexy\b|uncensored)")
_EXPLICIT_PROMPT = re.compile(
    r"\b(nsfw|nude|nudes|nudity|naked|porn\w*|hentai|xxx|sex|sexy|erotic\w*|lewd|topless|nipples?|"
    r"pussy|penis|genitals?|lingerie|underwear|bikini|cleavage|breasts?|boobs?)\b"
)
_LEVELS = (1, 2, 4, 8, 16)


def _api_level(value: Any) -> int:
    """The highest level set in today's API bit mask (1 PG, 2 PG-13, 4 R, 8 X, 16 XXX), 0 if none."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return 0
    return max(level for level in _LEVELS if value & level) if value & 31 else 0


def nsfw_level(
    name: str,
    tags: Iterable[str],
    image_ratings: Sequence[str | None],
    *,
    flagged: bool = False,
    api_level: Any = None,
) -> int:
    """The NSFW level (1, 2, 4 or 8; 16 from the API) of a model, from what the catalogue says about it."""
    lowered = {t.strip().lower() for t in tags}
    rated = [r for r in image_ratings if r]
    above = sum(r != "None" for r in rated) / len(rated) if rated else 0.0
    if flagged or lowered & EXPLICIT_TAGS or _EXPLICIT_NAME.search(name.lower()):
        level = 8
    elif len(rated) >= 2 and above > 0.5:
        level = 4
    elif lowered & SUGGESTIVE_TAGS or above >= 0.25:
        level = 2
    else:
        level = 1
    return max(level, _api_level(api_level))


def is_person(poi: bool, tags: Iterable[str]) -> bool:
    """A real-person likeness model: Civitai's ``poi`` flag, or tagged as a celebrity or real person."""
    return poi or bool({t.strip().lower() for t in tags} & PERSON_TAGS)


def asks_explicit(prompt: str) -> bool:
    """Whether a prompt asks for explicit or suggestive content in so many words (``unsafe`` ignores
    explicit picks for such prompts)."""
    return bool(_EXPLICIT_PROMPT.search(prompt.lower()))
