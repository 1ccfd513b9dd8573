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
    "banned_term",
    "embedding_term",
    "is_person",
    "negative_polluted",
    "negative_terms",
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


# -- negative prompts ------------------------------------------------------------------------------

_ETHNICITY = (
    r"asians?|african|africans|black (?:people|person|man|woman|men|women|skin)|dark[- ]skinned?|"
    r"dark skin|brown skin|white (?:people|person)|caucasian|latino|latina|hispanic|indian|chinese|"
    r"japanese|korean|arabs?|arabic|jewish|jews?|negro|ethnic|ethnicity|mixed race|"
    r"mexican|filipino|vietnamese"
)
_ANATOMY = (
    r"nipples?|areolae?|genitals?|genitalia|penis|penises|vagina|pussy|vulva|anus|testicles|"
    r"breasts?|boobs?|tits|cleavage|pubic hair|pubic|crotch|cameltoe|ass|butt|cum|semen|erection|"
    r"sex|sexual|intercourse|glans"
)
_BANNED = re.compile(rf"(?<![\w])(?:{_ETHNICITY}|{_ANATOMY})(?![\w])")
_JUNK = re.compile(r"negative prompt|prompt tested|^steps:|^sampler:")
_EMBEDDING = re.compile(
    r"^(?:embedding:)?[a-z0-9]+(?:[_\-.][a-z0-9]+)+$|negative|^bad[a-z0-9]+$|^ng_|^verybad|^unaesthetic|"
    r"^[a-z]+v\d+$"  # a versioned name: deformityv6, badhandv4
)
_WORDLIKE_EMBEDDING = re.compile(r"^(?:n|nreal|nart)fixer$|^unrealisticdream$|(?:^|[_\-])neg(?:$|[_\-])")
"""Embedding names spelt like words (``nfixer``, ``unrealisticdream``) or with a ``-neg`` part
(``bhands-neg``, ``z-neg``), seen in the negatives of Civitai's images: :data:`_KNOWN_WORDS` would take
them for words."""
_KNOWN_WORDS = re.compile(r"^(?:[a-z]+[_ \-])*[a-z]+$")
"""Danbooru-style ``bad_anatomy`` or ``low-res``: words joined by underscores, hyphens or spaces, no
digits, read as words not an embedding."""
_BAD_TAG = re.compile(
    r"^bad_(?:anatomy|hands?|feet|foot|fingers?|proportions|quality|face|eyes|arms?|legs?|body|"
    r"composition|perspective|lighting|drawing|id)$"
)
"""The ``bad_*`` Danbooru tags; other ``bad_`` and ``bad-`` names (``bad_prompt``, ``bad-artist``) are
embeddings."""
_WEIGHT = re.compile(r":\s*[-+]?\d*\.?\d+\s*$")


def negative_terms(text: str) -> list[str]:
    """The comma-separated terms of a negative prompt, lower-cased, without brackets and weights."""
    out = []
    for part in re.split(r"[,\n]", text or ""):
        term = re.sub(r"[()\[\]{}]", "", part).strip().lower()
        term = re.sub(r"\s+", " ", _WEIGHT.sub("", term)).strip(" .:")
        if term and not term.startswith("<"):
            out.append(term)
    return out


def banned_term(term: str) -> bool:
    """An ethnicity or explicit-anatomy term (someone else's exclusions), or infotext junk: never sent
    as a negative prompt that the user did not write."""
    # an underscore joins words (Danbooru's small_penis, pubic_hair, dark_skin)
    return bool(_BANNED.search(term.replace("_", " ")) or _JUNK.search(term))


def embedding_term(term: str) -> bool:
    """Whether a negative-prompt term names a textual-inversion embedding (``easynegative``,
    ``bad-hands-5``, ``ng_deepnegative_v1_75t``, or one inside words: ``drawn by bad-artist``): it only
    works when the generator has the file, so it is never sent unless the catalogue has it."""
    if " " in term:
        # inside words, only a name no word is spelt like: joined parts, digits, or "negative" in a word
        return any(
            _embedding_name(token) and (re.search(r"[_\-.\d]", token) or "negative" in token[1:])
            for token in term.split()
        )
    return _embedding_name(term)


def _embedding_name(term: str) -> bool:
    """Whether one token (no spaces) is an embedding name."""
    if _WORDLIKE_EMBEDDING.search(term):
        return True
    if term.startswith("bad_") and _KNOWN_WORDS.match(term):
        return not _BAD_TAG.match(term)  # bad_anatomy is a tag, bad_prompt an embedding
    if _KNOWN_WORDS.match(term) and "negative" not in term and not term.startswith(("bad", "ng_")):
        return False
    return bool(_EMBEDDING.search(term))


def negative_polluted(text: str) -> bool:
    """Whether a negative prompt carries a banned term (see :func:`banned_term`)."""
    return any(banned_term(term) for term in negative_terms(text))
