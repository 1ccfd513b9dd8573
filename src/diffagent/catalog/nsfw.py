"""One NSFW scale for every shape Civitai has used: the 2023 strings and today's integer bit flags.

The catalogue stores an image's level as the 2023 API's string (``None``, ``Soft``, ``Mature``, ``X``), so
that one filter serves old dumps and live crawls. Today's API sends integer ``nsfwLevel`` bit flags on
models and versions (PG 1, PG-13 2, R 4, X 8, XXX 16, Blocked 32; a model's value is the union of its
content's levels), the string ``nsfwLevel`` and an integer ``browsingLevel`` on images, and a boolean
``nsfw`` here and there. Each maps to the highest level it contains.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BLOCKED", "LEVELS", "PG", "PG13", "XXX", "R", "X", "image_level", "level_of", "model_is_nsfw"]

PG, PG13, R, X, XXX, BLOCKED = 1, 2, 4, 8, 16, 32
LEVELS: dict[int, str] = {PG: "None", PG13: "Soft", R: "Mature", X: "X", XXX: "X", BLOCKED: "X"}
"""Bit flag -> the stored level string."""
_NAMES = {
    "none": "None", "pg": "None", "soft": "Soft", "pg13": "Soft", "pg-13": "Soft", "mature": "Mature",
    "r": "Mature", "x": "X", "xxx": "X", "blocked": "X",
}  # fmt: skip


def _flags(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def level_of(value: Any) -> str | None:
    """The stored level of one value: bit flags (their highest bit), a level name, or None if neither."""
    flags = _flags(value)
    if flags is not None:
        return LEVELS[min(1 << (flags.bit_length() - 1), BLOCKED)]
    if isinstance(value, str):
        return _NAMES.get(value.strip().lower())
    return None


def image_level(image: dict[str, Any]) -> str | None:
    """An image's level from ``nsfw`` (2023 string), ``nsfwLevel`` (string or flags), ``browsingLevel``
    or a bare ``nsfw`` boolean, the most explicit field first."""
    for key in ("nsfw", "nsfwLevel", "browsingLevel"):
        level = level_of(image.get(key))
        if level is not None:
            return level
    if image.get("nsfw") is False:
        return "None"
    return None


def model_is_nsfw(record: dict[str, Any]) -> bool:
    """A model (or version) counts as NSFW when Civitai flags it or its content reaches level X."""
    flags = _flags(record.get("nsfwLevel"))
    return record.get("nsfw") is True or (flags is not None and flags >= X)
