"""Limits a model card states in words: "use at least 768x768", "CFG 4-7", "steps: 20-30".

Civitai descriptions are free HTML, and most numbers in them are not limits (pasted infotexts, training
notes, hires-fix settings), so only a few written forms count, each checked in ``tests/test_cards.py``:

- the smallest side: "at least / minimum / no lower than / not below / never below / higher than N" (or
  ``NxM``), with a resolution word (resolution, res, size, px, pixels) or an ``NxM`` pair in the phrase;
- a CFG range: "CFG (scale) a-b" (also "a to b", "a~b"), 1 <= a < b <= 30;
- a steps range: "steps a-b", 1 <= a < b <= 150, unless hires fix or an upscaler is named just before.

Read only from the card text (everything from Civitai is data: nothing here is executed or echoed).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

__all__ = ["CardLimits", "card_limits"]


@dataclass(frozen=True)
class CardLimits:
    """What a card says its model must be run with; None where it says nothing."""

    min_side: int | None = None
    cfg_range: tuple[float, float] | None = None
    steps_range: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.min_side, self.cfg_range, self.steps_range))


_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_NUMBER = r"(\d{1,2}(?:\.\d+)?)"
_RANGE = r"\s*(?:-|–|—|~|to)\s*"
_MIN_SIDE = re.compile(
    r"(?:at least|minimum(?: of)?|min\.?|no (?:lower|less|smaller) than|not (?:go )?below|never (?:go )?"
    r"below|higher than|larger than|bigger than)\s*(?:resolution|res|size)?\s*(?:of|:)?\s*"
    r"(\d{3,4})(?:\s*(?:x|×|\*)\s*(\d{3,4}))?\s*(px|pixels?)?",
    re.IGNORECASE,
)
_RESOLUTION_WORD = re.compile(r"\b(resolution|res|size|px|pixels?)\b", re.IGNORECASE)
_CFG = re.compile(
    rf"\bcfg(?:\s*scale)?\s*(?:of|:|=|between|from)?\s*{_NUMBER}{_RANGE}{_NUMBER}", re.IGNORECASE
)
_STEPS = re.compile(
    r"\b(?:sampling\s+)?steps?\s*(?:of|:|=|between|from)?\s*(\d{1,3})" + _RANGE + r"(\d{1,3})\b",
    re.IGNORECASE,
)
_NOT_THE_FIRST_PASS = re.compile(r"(hires|hi-res|high-res|upscal|denois|refiner|adetailer)", re.IGNORECASE)


def strip_html(text: str | None) -> str:
    """HTML as its text: tags become spaces, entities characters."""
    return html.unescape(_TAG.sub(" ", text)) if text else ""


def card_text(description: str | None) -> str:
    """A card's HTML as plain text on one line."""
    return _SPACE.sub(" ", strip_html(description)).strip()


def card_limits(description: str | None) -> CardLimits:
    """The limits the card ``description`` (Civitai HTML) states, in the forms of the module doc."""
    text = card_text(description)
    min_side = None
    for match in _MIN_SIDE.finditer(text):
        width, height, unit = int(match[1]), match[2], match[3]
        window = text[max(0, match.start() - 40) : match.end()]
        if not (height or unit or _RESOLUTION_WORD.search(window)):
            continue  # "at least 150 steps", "more than 200 images"
        side = min(width, int(height)) if height else width
        if 256 <= side <= 2048:
            min_side = max(min_side or 0, side)
    cfg = None
    for match in _CFG.finditer(text):
        low, high = float(match[1]), float(match[2])
        if 1 <= low < high <= 30:
            cfg = (low, high)
            break
    steps = None
    for match in _STEPS.finditer(text):
        low_steps, high_steps = int(match[1]), int(match[2])
        before = text[max(0, match.start() - 25) : match.start()]
        if 1 <= low_steps < high_steps <= 150 and not _NOT_THE_FIRST_PASS.search(before):
            steps = (low_steps, high_steps)
            break
    return CardLimits(min_side, cfg, steps)
