"""Typical generation parameters of each checkpoint, learnt from the sample images that used it.

A checkpoint's community images say how it is meant to be run (its sampler, step count, CFG, size, clip
skip and negative prompt). :class:`ParamStats` reads them in one SQL pass and keeps, per field, the
statistic of the most specific level that has data: the checkpoint version, then its model (other
versions), then its creator's checkpoints of the same base-model family (creators keep their settings:
DABench params +0.03 from this level alone), then the family, then the whole catalogue, then fixed
defaults. Sizes never come from another family (the family's default size instead), and the sampler, steps
and CFG of a few-step checkpoint (Turbo / LCM / Lightning) only from its own images or few-step defaults.

Agents use it as the prior for the parameters of any checkpoint they choose; :func:`assemble_call` turns
a catalogue version and such parameters into an APICall.

An image counts for the checkpoint version its Civitai resources name (``civitaiResources``), else the
one its ``Model hash`` (AutoV2) names, or, with neither, for the page it hangs on when that page is a
checkpoint (the rule DABench uses for its ground truth). Pass ``image_ids`` to learn only from some
images (an agent under evaluation passes the source images of its training pairs, so that no test image
leaks into its parameters).
"""

from __future__ import annotations

import functools
import re
import statistics
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...catalog import (
    CatalogFilter,
    Store,
    VersionRef,
    default_size,
    family,
    family_spec,
    is_few_step,
    made_with_sql,
    recipe,
    settle,
    size_ok,
    snap_size,
)
from ...catalog.cards import CardLimits
from ...catalog.safety import banned_term, embedding_term, negative_terms
from ...catalog.validate import CFG_RANGE, CLIP_SKIP_RANGE, SIZE_RANGE, STEPS_RANGE
from ...errors import UserInputError
from ...schema import VAE, APICall, Checkpoint, Hires, LoRA, normalize_sampler
from ...textsafety import prompt_with_words, strip_generator_syntax

__all__ = [
    "ParamStats",
    "activation_words",
    "assemble_call",
    "clamp",
    "consensus_negative",
    "fit_settings",
    "hires_of",
    "orientation_of",
    "published_vaes",
    "valid_size",
]

_FEW_STEP_KEYS = ("sampler", "steps", "cfg_scale")
"""Settings a few-step checkpoint takes from its own examples or its recipe, never from its family's."""

# Resolve each image to the checkpoint version it was generated with (see the module docstring).
_CHECKPOINTS = CatalogFilter(
    types=("Checkpoint",), allow_nsfw_models=True, allow_poi=True, require_file=False
)
"""Images count for the checkpoint that made them (:func:`~diffagent.catalog.made_with_sql`), resolved
among all checkpoints: the statistics describe the catalogue, the agent's filter applies to its answers."""


def _sql() -> tuple[str, list[object]]:
    made, params = made_with_sql(_CHECKPOINTS)
    return (
        f"""SELECT i.id AS image_id, i.sampler, i.steps, i.cfg_scale, i.gen_width, i.gen_height, i.clip_skip,
                   i.negative_prompt, made.version_id, v.model_id, v.base_model, m.creator
            FROM images i JOIN ({made}) made ON made.row = i.rowid
            JOIN versions v ON v.id = made.version_id JOIN models m ON m.id = v.model_id
            ORDER BY i.id, made.version_id""",
        params,
    )


def clamp(value: float, bounds: tuple[float, float]) -> float:
    """``value`` moved into the inclusive range ``bounds``."""
    return min(max(value, bounds[0]), bounds[1])


def valid_size(width: int | None, height: int | None) -> bool:
    """Whether a generator accepts this size as is (both sides multiples of 8 within SIZE_RANGE)."""
    lo, hi = SIZE_RANGE
    return all(side is not None and lo <= side <= hi and side % 8 == 0 for side in (width, height))


_sampler = functools.lru_cache(maxsize=1024)(normalize_sampler)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number > 0 else None  # NaN and non-positive are no value


def hires_of(meta: Any) -> Hires | None:
    """The hires fix an AUTOMATIC1111 infotext records (``Hires upscale`` / ``Hires upscaler`` /
    ``Denoising strength`` / ``Hires steps``), None when it records none. Upscaler names are kept only when
    they look like one (letters, digits, spaces and ``+-_.()``): catalogue text is untrusted."""
    if not isinstance(meta, dict):
        return None
    scale = _number(meta.get("Hires upscale"))
    upscaler = meta.get("Hires upscaler")
    if scale is None or not isinstance(upscaler, str) or not _UPSCALER.fullmatch(upscaler.strip()):
        return None
    if not 1.0 < scale <= 4.0:
        return None
    denoise = _number(meta.get("Denoising strength"))
    steps = _number(meta.get("Hires steps"))
    return Hires(
        scale=round(scale, 2),
        upscaler=upscaler.strip(),
        denoising_strength=round(min(denoise, 1.0), 2) if denoise is not None else 0.5,
        steps=int(steps) if steps is not None and steps <= STEPS_RANGE[1] else 0,
    )


_UPSCALER = re.compile(r"[A-Za-z0-9][A-Za-z0-9 +\-_.()]{0,63}")


@functools.lru_cache(maxsize=1024)
def _family_key(base_model: str | None) -> str | None:
    """Family of a base model, or the base model itself where no family is known (``Other``)."""
    return family(base_model) or base_model


def _observation(row: Any) -> tuple[Any, ...]:
    """The normalised (sampler, steps, cfg, size, clip skip, negative prompt) of one image row."""
    size = (row["gen_width"], row["gen_height"])
    # AUTOMATIC1111 writes "Clip skip" only when it is not 1: an infotext without it means 1.
    clip_skip = row["clip_skip"] if row["clip_skip"] is not None else (1 if row["steps"] else None)
    return (
        _sampler(row["sampler"]),
        row["steps"],
        row["cfg_scale"],
        size if valid_size(*size) else None,
        clip_skip,
        row["negative_prompt"] or "",
    )


def _mode(values: list[Any]) -> Any:
    """The most common value (the first seen among ties, so results are deterministic), or None."""
    return Counter(values).most_common(1)[0][0] if values else None


@dataclass
class _Tally:
    """Raw observations of one level (a version, a model, a family, the catalogue)."""

    images: int = 0
    samplers: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    cfgs: list[float] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    clip_skips: list[int] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)

    def add(self, observation: tuple[Any, ...]) -> None:
        sampler, steps, cfg, size, clip_skip, negative = observation
        self.images += 1
        if sampler:
            self.samplers.append(sampler)
        if steps is not None:
            self.steps.append(steps)
        if cfg is not None:
            self.cfgs.append(cfg)
        if size is not None:
            self.sizes.append(size)
        if clip_skip is not None:
            self.clip_skips.append(clip_skip)
        self.negatives.append(negative)

    def summary(self) -> dict[str, Any]:
        """Per field the typical value, or None where this level saw no data for it."""
        size = _mode(self.sizes)
        clip_skip = _mode(self.clip_skips)
        return {
            "sampler": _mode(self.samplers),
            "steps": int(clamp(round(statistics.median(self.steps)), STEPS_RANGE)) if self.steps else None,
            "cfg_scale": float(clamp(statistics.median(self.cfgs), CFG_RANGE)) if self.cfgs else None,
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "clip_skip": int(clamp(clip_skip, CLIP_SKIP_RANGE)) if clip_skip is not None else None,
            "negative_prompt": _mode(self.negatives),
        }


class ParamStats:
    """Typical parameters per checkpoint version, with fallbacks; built once, then answered from memory."""

    _shared: ClassVar[dict[tuple[Any, ...], ParamStats]] = {}

    def __init__(self, store: Store, image_ids: Collection[int] | None = None) -> None:
        allowed = None if image_ids is None else set(image_ids)
        tallies: dict[tuple[str, Any], _Tally] = {}
        seen: set[int] = set()
        for row in store.conn.execute(*_sql()):
            if (allowed is not None and row["image_id"] not in allowed) or row["image_id"] in seen:
                continue  # an image shown on several pages counts once
            seen.add(row["image_id"])
            fam = _family_key(row["base_model"])
            keys = [("version", row["version_id"]), ("model", row["model_id"])]
            if row["creator"]:
                keys.append(("creator", (row["creator"], fam)))
            keys += [("family", fam), ("global", None)]
            observation = _observation(row)
            for key in keys:
                tally = tallies.get(key)
                if tally is None:
                    tally = tallies[key] = _Tally()
                tally.add(observation)
        self._support = {key: tally.images for key, tally in tallies.items()}
        self._summaries = {key: tally.summary() for key, tally in tallies.items()}
        self._names: dict[int, VersionRef | None] = {}
        self._creators = dict(store.conn.execute("SELECT id, creator FROM models").fetchall())
        self._store = store

    @classmethod
    def shared(cls, store: Store, image_ids: Collection[int] | None = None) -> ParamStats:
        """One instance per store content and image selection, so agents built side by side share it."""
        key = (
            id(store),
            str(store.path),
            store.revision,
            None if image_ids is None else frozenset(image_ids),
        )
        if key not in cls._shared:
            if len(cls._shared) >= 4:
                cls._shared.pop(next(iter(cls._shared)))
            cls._shared[key] = cls(store, image_ids)
        return cls._shared[key]

    def support(self, version_id: int) -> int:
        """How many images the version's own statistics rest on."""
        return self._support.get(("version", version_id), 0)

    def _ref(self, version_id: int) -> VersionRef | None:
        if version_id not in self._names:
            self._names[version_id] = self._store.version(version_id)
        return self._names[version_id]

    def for_version(self, version_id: int, base_model: str | None = None) -> dict[str, Any]:
        """Typical ``sampler, steps, cfg_scale, width, height, clip_skip, negative_prompt`` of a version.

        ``base_model`` picks the family fallback when the catalogue does not know the version. The result
        also carries ``support`` (images of the version itself) and ``source`` (the level of the steps).
        """
        ref = self._ref(version_id)
        model_id = ref.model_id if ref else None
        base = ref.base_model if ref and ref.base_model else base_model
        fam = _family_key(base)
        few_step = is_few_step(base, ref.full_name if ref else "")
        own = [("version", version_id), ("model", model_id)]
        creator = ("creator", (self._creators.get(model_id), fam))
        shared = [*own, creator, ("family", fam), ("global", None)]
        width, height = default_size(base)
        settings = recipe(base, ref.full_name if ref else "")
        spec = family_spec(base)
        fallback = {
            "sampler": settings.sampler,
            "steps": settings.steps,
            "cfg_scale": settings.cfg_scale,
            "clip_skip": spec.clip_skip if spec else 1,
            "negative_prompt": "",
            "width": width,
            "height": height,
        }
        out: dict[str, Any] = {}
        source = "default"
        for name in ("sampler", "steps", "cfg_scale", "width", "height", "clip_skip", "negative_prompt"):
            levels: list[tuple[str, Any]]
            if name in ("width", "height"):
                levels = [*own, creator, ("family", fam)]  # another family's sizes would be wrong
            elif few_step and name in _FEW_STEP_KEYS:
                levels = own  # ordinary checkpoints of the family run with many more steps
            else:
                levels = shared
            for level in levels:
                value = self._summaries.get(level, {}).get(name)
                if value is not None:
                    out[name] = value
                    if name == "steps":
                        source = level[0]
                    break
            else:
                out[name] = fallback[name]
        out["support"] = self.support(version_id)
        out["source"] = source
        return out


_ACTIVATION_WORDS = 1
_ACTIVATION_MAX_WORDS = 4
_ACTIVATION_MAX_CHARS = 40


def activation_words(trained_words: Iterable[str]) -> list[str]:
    """The words that switch a LoRA on: its first short trained word. The rest are mostly training
    captions (one LoRA lists forty), which only bloat the prompt."""
    out: list[str] = []
    seen: set[str] = set()
    for word in trained_words:
        text = " ".join(word.split()).strip(" ,")
        key = text.lower()
        if not text or key in seen or len(text) > _ACTIVATION_MAX_CHARS:
            continue
        if len(text.split()) > _ACTIVATION_MAX_WORDS:
            continue
        seen.add(key)
        out.append(text)
        if len(out) == _ACTIVATION_WORDS:
            break
    return out


def assemble_call(
    ref: VersionRef,
    prompt: str,
    params: dict[str, Any],
    loras: Iterable[LoRA] = (),
    seed: int = -1,
    vae: VAE | None = None,
) -> APICall:
    """An executable call: the catalogue checkpoint ``ref``, ``params`` and LoRAs with trigger words added,
    settled by the checkpoint's family (:func:`diffagent.catalog.settle`: buckets, clip skip, Pony's score
    tags, Flux's guidance and no negative prompt), with the ``vae`` it is published with (see
    :func:`published_vaes`)."""
    # catalogue text is data: trigger words lose generator syntax before they reach the call or its prompt
    loras = [
        lora.model_copy(
            update={"trigger_words": [w for w in map(strip_generator_syntax, lora.trigger_words) if w]}
        )
        for lora in loras
    ]
    if not strip_generator_syntax(prompt):
        raise UserInputError("the prompt is empty once its generator tags (<lora:...>) are removed")
    fields = ("negative_prompt", "sampler", "steps", "cfg_scale", "width", "height", "clip_skip")
    given = {name: params[name] for name in fields}
    given["negative_prompt"] = strip_generator_syntax(params["negative_prompt"] or "")
    settled = settle(ref.base_model, ref.full_name, {"prompt": prompt.strip(), **given})
    # an embedding stays listed only while the settled negative still names it (Flux has none)
    embeddings = params.get("embeddings") or []
    if embeddings:
        sent = set(negative_terms(settled["negative_prompt"]))
        embeddings = [e for e in embeddings if sent & set(e.trigger_words)]
    return APICall(
        checkpoint=Checkpoint(
            model_id=ref.model_id,
            version_id=ref.version_id,
            name=ref.model_name.strip(),
            base_model=ref.base_model or "Other",
        ),
        loras=loras,
        prompt=prompt_with_words(settled["prompt"], [w for lora in loras for w in lora.trigger_words]),
        seed=seed,
        **{name: settled[name] for name in (*fields, "guidance", "scheduler")},
        hires=params.get("hires"),
        vae=vae,
        embeddings=embeddings or None,
    )


def published_vaes(store: Store) -> dict[int, VAE]:
    """Checkpoint version id -> the VAE file it is published with, for the versions whose files list one
    (``noVAE`` versions of Realistic Vision or MeinaMix decode washed out without it)."""
    return {
        version_id: VAE(model_id=file.version.model_id, version_id=version_id, name=file.name)
        for version_id, file in store.vae_files().items()
        if file.name
    }


# -- settings a user would run ---------------------------------------------------------------------

_ORIENTATION_WORDS = {
    "portrait": re.compile(r"\b(portrait|vertical|tall|phone wallpaper|full[- ]body|9:16|2:3)\b"),
    "landscape": re.compile(
        r"\b(landscape|wide|wide[- ]angle|panorama|panoramic|widescreen|banner|skyline|scenery|16:9|3:2)\b"
    ),
    "square": re.compile(r"\b(square|1:1|icon|logo|avatar|profile picture|emoji|sticker)\b"),
}
_TALL_SUBJECTS = re.compile(r"\b(skyscraper|tower|lighthouse|waterfall)s?\b")


def orientation_of(prompt: str) -> str | None:
    """The orientation a prompt asks for in words (``portrait``, ``landscape``, ``square``), None when it
    says none or several (``a portrait in a landscape``: the evidence decides)."""
    lowered = prompt.lower()
    found = {name for name, pattern in _ORIENTATION_WORDS.items() if pattern.search(lowered)}
    if not found and _TALL_SUBJECTS.search(lowered):
        found = {"portrait"}
    return found.pop() if len(found) == 1 else None


def fit_settings(
    ref: VersionRef, params: dict[str, Any], orientation: str | None = None, card: CardLimits | None = None
) -> dict[str, Any]:
    """``params`` moved to what the checkpoint's family is run with: steps and CFG within the family's
    (or few-step variant's) ranges, a single-pass size within its area and aspect bounds (snapped to the
    nearest bucket), turned to the ``orientation`` the prompt asks for; then within what its ``card``
    states (:mod:`diffagent.catalog.cards`) where that fits inside the family's bounds."""
    settings = recipe(ref.base_model, ref.full_name)
    card = card or CardLimits()
    out = dict(params)
    out["steps"] = int(clamp(out["steps"], _within(settings.steps_for(out.get("sampler")), card.steps_range)))
    out["cfg_scale"] = float(clamp(out["cfg_scale"], _within(settings.cfg_range, card.cfg_range)))
    width, height = out["width"], out["height"]
    if orientation == "square" and width != height:
        width, height = default_size(ref.base_model, "square")
    elif (orientation == "portrait" and width > height) or (orientation == "landscape" and height > width):
        width, height = height, width
    elif orientation in ("portrait", "landscape") and width == height:
        width, height = default_size(ref.base_model, orientation)
    elif orientation is None and max(width, height) > _STRETCHED * min(width, height):
        # a banner shape (704x320) only when the prompt asks for a wide or tall picture
        width, height = default_size(ref.base_model, "landscape" if width > height else "portrait")
    width, height = snap_size(ref.base_model, width, height)
    if card.min_side and min(width, height) < card.min_side:
        width, height = _at_least(ref.base_model, width, height, card.min_side)
    out["width"], out["height"] = width, height
    return out


_STRETCHED = 2.0
"""Sides further apart than this ratio are a banner or strip, kept only where the prompt names its shape."""


def _within(family: tuple[Any, Any], card: tuple[Any, Any] | None) -> tuple[Any, Any]:
    """The card's range inside the family's, or the family's where they do not overlap."""
    if card is None or max(family[0], card[0]) > min(family[1], card[1]):
        return family
    return max(family[0], card[0]), min(family[1], card[1])


def _at_least(base_model: str | None, width: int, height: int, side: int) -> tuple[int, int]:
    """``width`` x ``height`` grown so that its short side is ``side``, the long side cut back (towards a
    square) where the family would not run a single pass that large; unchanged where even the square is
    too large for the family."""
    if not size_ok(base_model, side, side):
        return width, height
    short, long = sorted((width, height))
    grown = max(side, int(long * side / short) // 8 * 8)
    while grown > side and not size_ok(base_model, side, grown):
        grown -= 8
    return (grown, side) if width > height else (side, grown)


_NEGATIVE_SHARE = 0.3
"""A negative term joins the consensus when this share of the negatives (and at least two) use it."""
_NEGATIVE_TERMS = 24


def consensus_negative(
    negatives: Iterable[str], share: float = _NEGATIVE_SHARE, embeddings: Collection[str] = ()
) -> str:
    """The terms the given negative prompts agree on (used in ``share`` of them, at least two), most
    used first, without ethnicity or explicit-anatomy terms, infotext junk or embedding names other than
    the catalogue's ``embeddings`` (:mod:`diffagent.catalog.safety`, :mod:`.embeddings`): a negative of the
    checkpoint's users, never one user's."""
    counts: Counter[str] = Counter()
    total = 0
    for negative in negatives:
        terms = set(negative_terms(negative))
        if terms:
            total += 1
            counts.update(terms)
    need = max(2, share * total)
    kept = [
        term
        for term, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if count >= need
        and not banned_term(term)
        and (term in embeddings or not embedding_term(term))
        and _CLEAN_TERM.fullmatch(term)
    ]
    return ", ".join(kept[:_NEGATIVE_TERMS])


_CLEAN_TERM = re.compile(r"[\w][\w '\-./]{0,60}")
"""Plain words only: no generator syntax (``<...>``, ``[a|b]``) reaches the negative prompt."""
