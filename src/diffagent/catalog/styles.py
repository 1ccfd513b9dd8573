"""Which visual style a prompt asks for, and which styles a checkpoint makes: written rules, one place.

Five styles users ask for by name: ``photo``, ``anime``, ``painting`` (painting, illustration, drawing,
concept art), ``3d`` (3D render, cartoon, toy, Pixar-like) and ``pixel`` (pixel art). The rules are word
lists matched on whole words of the lower-cased text (``docs/intent-rules.md`` states them for readers):
a prompt's intent is the one style whose words it uses, or ``None`` when it uses none or several (not a
clear case). A checkpoint's profile is the share of each style in what its page says: its tags and name
(together half of the weight, when they name a style) and the clear intents of its example prompts.

The bench's ``intent_match`` metric and the default agent's style features both read these rules, so a
better rule improves what is measured and what is learnt together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import numpy as np

from .store import Store

__all__ = [
    "STYLES",
    "STYLE_PHRASES",
    "SUITS_SHARE",
    "model_styles",
    "prompt_intent",
    "style_hits",
    "style_phrases",
    "style_profile",
    "suits",
    "tag_styles",
]

STYLES: tuple[str, ...] = ("photo", "anime", "painting", "3d", "pixel")

_PROMPT_WORDS: dict[str, tuple[str, ...]] = {
    "photo": (
        "photo", "photos", "photograph", "photographs", "photography", "photographic", "photorealistic",
        "photorealism", "photo realistic", "dslr", "35mm", "50mm", "85mm", "canon eos", "nikon", "sony a7",
        "f/1.8", "f/2.8", "f1.8", "f2.8", "bokeh", "polaroid", "raw photo", "film grain", "kodak",
        "portra", "analog photo", "selfie", "headshot", "product shot", "studio lighting",
    ),
    "anime": (
        "anime", "manga", "waifu", "makoto shinkai", "studio ghibli", "ghibli",
        "kyoto animation", "anime style", "cel shaded", "cel shading", "visual novel", "chibi", "pixiv",
        "danbooru", "shoujo", "shonen", "ufotable",
    ),
    "painting": (
        "painting", "paintings", "oil painting", "watercolor", "watercolour", "acrylic", "gouache",
        "illustration", "illustrated", "concept art", "drawing", "sketch", "pencil", "charcoal",
        "ink drawing", "impressionist", "impressionism", "expressionism", "ukiyo-e", "ukiyo e",
        "art nouveau", "baroque", "renaissance", "greg rutkowski", "alphonse mucha", "van gogh",
        "monet", "rembrandt", "artgerm", "painted", "brush strokes", "canvas", "fresco", "matte painting",
        "storybook", "comic", "comic book", "line art", "lineart", "digital painting", "digital art",
        "fantasy art",
    ),
    "3d": (
        "3d", "3d render", "3d model", "3d art", "cinema 4d", "c4d", "pixar", "disney pixar", "dreamworks",
        "claymation", "clay", "figurine", "toy", "vinyl figure", "vinyl toy", "stop motion", "low poly",
        "zbrush", "cartoon", "blender 3d", "3d animation",
    ),
    "pixel": ("pixel art", "pixelart", "pixel", "pixels", "8-bit", "8 bit", "16-bit", "16 bit", "sprite"),
}  # fmt: skip

_TAG_WORDS: dict[str, tuple[str, ...]] = {
    "photo": (
        "photorealistic", "realistic", "photography", "photorealism", "photo", "realism", "hyperrealism",
        "hyperrealistic", "raw photo", "real", "portrait photography", "photograph",
    ),
    "anime": ("anime", "manga", "waifu", "2d", "anime girl", "anime style", "chibi", "hentai"),
    "painting": (
        "illustration", "painting", "paintings", "art style", "artstyle", "digital illustration",
        "concept art", "fantasy art", "oil painting", "watercolor", "artistic", "digital art",
        "semi-realistic", "semirealistic", "semi-realism", "2.5d", "comic", "comic book", "sketch",
        "drawing", "ink", "art",
    ),
    "3d": ("3d", "cartoon", "3d render", "pixar", "disney", "3d model", "clay", "toon", "2.5d", "render"),
    "pixel": ("pixel art", "pixelart", "pixel", "8bit", "16bit", "sprite", "pixel-art"),
}  # fmt: skip


def _pattern(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted({re.escape(w) for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![\w])(?:" + "|".join(alternatives) + r")(?![\w])")


_PROMPT = {style: _pattern(words) for style, words in _PROMPT_WORDS.items()}
_TAG = {style: frozenset(words) for style, words in _TAG_WORDS.items()}
_NAME = {style: _pattern(words) for style, words in _TAG_WORDS.items() if style != "painting"}
"""Names say ``anime`` or ``realistic`` often, ``art`` too often to mean painting."""


def style_hits(text: str) -> np.ndarray:
    """(len(STYLES),) 0/1: which styles' prompt words ``text`` uses."""
    lowered = text.lower()
    return np.array([bool(_PROMPT[s].search(lowered)) for s in STYLES], dtype=np.float32)


def prompt_intent(text: str) -> str | None:
    """The one style ``text`` asks for by its words, or None (no style word, or words of several)."""
    hits = style_hits(text)
    if hits.sum() != 1:
        return None
    return STYLES[int(np.argmax(hits))]


def tag_styles(name: str, tags: Iterable[str]) -> np.ndarray:
    """(len(STYLES),) 0/1: the styles a model's tags or name claim."""
    lowered = {t.strip().lower() for t in tags}
    low_name = name.lower()
    return np.array(
        [bool(lowered & _TAG[s]) or bool(s in _NAME and _NAME[s].search(low_name)) for s in STYLES],
        dtype=np.float32,
    )


def style_profile(claimed: np.ndarray, intents: np.ndarray) -> np.ndarray:
    """Half from the claimed styles (shared), half from the example prompts' clear intents (counts per
    style); either alone when the other says nothing."""
    out = np.zeros(len(STYLES), dtype=np.float32)
    parts = 0
    if claimed.sum():
        out += claimed / claimed.sum()
        parts += 1
    if intents.sum():
        out += intents / intents.sum()
        parts += 1
    return out / parts if parts else out


def model_styles(store: Store, model_ids: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """Model id -> style profile (shares summing to 1, all zero when nothing says), from its tags, name
    and the prompts of the example images on its page."""
    wanted = None if model_ids is None else set(model_ids)
    intents: dict[int, np.ndarray] = {}
    for model_id, prompt in store.conn.execute(
        "SELECT model_id, prompt FROM images WHERE prompt IS NOT NULL AND nsfw = 'None'"
    ):
        if wanted is not None and model_id not in wanted:
            continue
        intent = prompt_intent(prompt)
        if intent is not None:
            intents.setdefault(model_id, np.zeros(len(STYLES), dtype=np.float32))[STYLES.index(intent)] += 1
    out = {}
    for model_id, name, tags in store.conn.execute("SELECT id, name, tags FROM models"):
        if wanted is not None and model_id not in wanted:
            continue
        claimed = tag_styles(name, json.loads(tags))
        out[model_id] = style_profile(claimed, intents.get(model_id, np.zeros(len(STYLES), dtype=np.float32)))
    return out


STYLE_PHRASES: tuple[str, ...] = (
    "pixel art", "watercolor", "ukiyo-e", "van gogh", "logo", "line art", "low poly", "claymation",
    "chibi", "papercut", "paper cut", "stained glass", "origami", "sticker", "tarot", "ink wash",
    "woodblock", "vaporwave", "synthwave", "art deco", "art nouveau", "impressionism", "cubism",
    "pop art", "graffiti", "blueprint", "mosaic", "embroidery", "lego", "voxel", "crayon",
)  # fmt: skip
"""Named styles a style LoRA is made for; a prompt that names one is asking for that LoRA's look."""
_VARIANT = {
    variant: phrase
    for phrase in STYLE_PHRASES
    for variant in (phrase, phrase.replace("-", " "), phrase.replace(" ", ""))
}
_ANY_PHRASE = _pattern(_VARIANT)


def style_phrases(text: str) -> list[str]:
    """The named styles of :data:`STYLE_PHRASES` that ``text`` (a prompt, or a LoRA's name and tags)
    uses, in list order (one pattern for all of them: this runs once per prompt)."""
    found = {_VARIANT[match] for match in _ANY_PHRASE.findall(text.lower())}
    return [phrase for phrase in STYLE_PHRASES if phrase in found]


SUITS_SHARE = 0.2
"""A checkpoint suits a style that has at least this share of its profile (or is its largest share)."""


def suits(profile: np.ndarray, style: str) -> bool:
    """Whether a model with this style profile makes pictures in ``style``."""
    value = float(profile[STYLES.index(style)])
    return value > 0 and (value >= SUITS_SHARE or value >= float(profile.max()))
