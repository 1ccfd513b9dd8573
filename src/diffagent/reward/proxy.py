"""The offline proxy reward ``offline-proxy-v1``: a reward of API calls from catalogue signals alone.

No image can be generated or scored on machines without weights, so this reward stands in for the
unified image reward (``unified.py``) and every report names it. It is built from real signals only, each
in [0, 1], and their weighted sum is in [0, 1]:

- **validity** (a gate): a call naming a checkpoint or LoRA that is not in the catalogue, a LoRA of
  another base family, an unknown sampler or impossible numbers gets :data:`MINIMUM` (0.0), whatever else.
  The catalogue's own validator (``catalog.validate.validate_call``) decides where it exists.
- **agreement** with the real image's call, when a reference is given (DABench pairs): same checkpoint
  version 1.0 / same model 0.7 / same base family 0.3; LoRA overlap (Jaccard of model ids); sampler
  (exact 1.0, same solver with another schedule 0.5); steps ``1 - |ln(s / s_ref)| / ln 2``; CFG
  ``1 - |c - c_ref| / 4.5``; size (same 1.0, else half for the orientation, half for the area ratio);
  clip skip. Weights: :data:`AGREEMENT_WEIGHTS`.
- **typicality** of the parameters for the chosen checkpoint version, against the parameters of its
  sample images (images on its page, and any image whose model hash names it), shrunk towards its base
  family with :data:`PRIOR_IMAGES` pseudo-images so that versions with few images stay sensible:
  sampler and clip-skip shares relative to the most common value, Gaussian closeness of log-steps, CFG
  and log-area, orientation share. Weights: :data:`TYPICALITY_WEIGHTS`.
- **popularity** of the checkpoint model: ``0.6 * log1p(downloads) / log1p(max downloads)`` +
  ``0.4 * rating / 5``, the rating a Bayesian average with :data:`RATING_PRIOR_COUNT` prior votes.
- **prompt** fidelity: the share of the instruction's words kept in the call's prompt (0.7) and the share
  of LoRAs whose trigger words it contains (0.3).

Totals: with a reference :data:`WEIGHTS_WITH_REFERENCE`, without one :data:`WEIGHTS_WITHOUT_REFERENCE`.
:meth:`ProxyReward.explain` returns every part. Statistics are read once (one SQL pass over the images)
when the reward is built, so scoring thousands of calls takes milliseconds each batch.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog import Store, family, made_with_sql, validate_call
from ..schema import APICall, normalize_sampler

__all__ = [
    "AGREEMENT_WEIGHTS",
    "MINIMUM",
    "NAME",
    "TYPICALITY_WEIGHTS",
    "WEIGHTS_WITHOUT_REFERENCE",
    "WEIGHTS_WITH_REFERENCE",
    "ProxyReward",
]

NAME = "offline-proxy-v1"
MINIMUM = 0.0
WEIGHTS_WITH_REFERENCE = {"agreement": 0.50, "typicality": 0.20, "popularity": 0.15, "prompt": 0.15}
WEIGHTS_WITHOUT_REFERENCE = {"typicality": 0.45, "popularity": 0.30, "prompt": 0.25}
AGREEMENT_WEIGHTS = {
    "checkpoint": 0.40, "loras": 0.15, "sampler": 0.15, "steps": 0.10, "cfg": 0.10,
    "size": 0.05, "clip_skip": 0.05,
}  # fmt: skip
TYPICALITY_WEIGHTS = {"sampler": 0.25, "steps": 0.25, "cfg": 0.25, "size": 0.15, "clip_skip": 0.10}
PRIOR_IMAGES = 5.0
RATING_PRIOR_COUNT = 10.0
LORA_TYPES = ("LORA", "LoCon", "DoRA")
# Floors of the spreads, so that a version whose few images all share one value does not punish neighbours.
_FLOOR = {"log_steps": 0.15, "cfg": 0.75, "log_area": 0.2}
_SCHEDULES = re.compile(r" (Karras|Exponential|SGMUniform)$")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class _Moments:
    """Count, sum and sum of squares of one numeric parameter."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, value: float, count: int) -> None:
        self.n += count
        self.total += value * count
        self.squares += value * value * count

    def merge(self, other: _Moments) -> None:
        self.n += other.n
        self.total += other.total
        self.squares += other.squares

    def pooled(self, prior: _Moments, floor: float) -> tuple[float, float]:
        """Mean and std of these values plus PRIOR_IMAGES pseudo-values drawn from ``prior``."""
        if prior.n == 0 and self.n == 0:
            return 0.0, math.inf
        p_mean = prior.total / prior.n if prior.n else self.total / self.n
        p_square = prior.squares / prior.n if prior.n else self.squares / self.n
        weight = self.n + PRIOR_IMAGES
        mean = (self.total + PRIOR_IMAGES * p_mean) / weight
        variance = (self.squares + PRIOR_IMAGES * p_square) / weight - mean * mean
        return mean, max(math.sqrt(max(variance, 0.0)), floor)


@dataclass
class _ParamStats:
    """The generation parameters of a set of sample images."""

    sampler: Counter[str] = field(default_factory=Counter)
    clip_skip: Counter[int] = field(default_factory=Counter)
    orientation: Counter[str] = field(default_factory=Counter)
    log_steps: _Moments = field(default_factory=_Moments)
    cfg: _Moments = field(default_factory=_Moments)
    log_area: _Moments = field(default_factory=_Moments)

    def add(self, sampler: str | None, *params: float | None, count: int) -> None:
        """Count ``count`` images with ``params`` = (steps, cfg, width, height, clip skip), any of them None;
        ``sampler`` is already normalised."""
        steps, cfg, width, height, clip_skip = params
        if sampler:
            self.sampler[sampler] += count
        if steps:
            self.log_steps.add(math.log(steps), count)
            # AUTOMATIC1111 writes "Clip skip" only when it is not 1: a full infotext without it means 1.
            self.clip_skip[int(clip_skip or 1)] += count
        if cfg:
            self.cfg.add(cfg, count)
        if width and height:
            self.orientation[_orientation(int(width), int(height))] += count
            self.log_area.add(math.log(width * height), count)

    def merge(self, other: _ParamStats) -> None:
        self.sampler.update(other.sampler)
        self.clip_skip.update(other.clip_skip)
        self.orientation.update(other.orientation)
        self.log_steps.merge(other.log_steps)
        self.cfg.merge(other.cfg)
        self.log_area.merge(other.log_area)


@dataclass(frozen=True)
class _Typical:
    """What is typical for one checkpoint version: relative shares and (mean, std) pairs."""

    sampler: dict[str, float]
    clip_skip: dict[int, float]
    orientation: dict[str, float]
    log_steps: tuple[float, float]
    cfg: tuple[float, float]
    log_area: tuple[float, float]


@dataclass(frozen=True)
class _Version:
    model_id: int
    model_type: str | None
    base_model: str | None
    trained_words: tuple[str, ...]


def _orientation(width: int, height: int) -> str:
    if height > width * 1.05:
        return "portrait"
    return "landscape" if width > height * 1.05 else "square"


def _relative_shares(own: Counter[Any], prior: Counter[Any]) -> dict[Any, float]:
    """Shares of each value (own counts plus PRIOR_IMAGES pseudo-counts), divided by the largest share."""
    prior_total = sum(prior.values())
    weights = {
        key: own[key] + (PRIOR_IMAGES * prior[key] / prior_total if prior_total else 0.0)
        for key in set(own) | set(prior)
    }
    top = max(weights.values(), default=0.0)
    return {key: value / top for key, value in weights.items()} if top > 0 else {}


def _gauss(value: float, mean_std: tuple[float, float]) -> float:
    mean, std = mean_std
    return math.exp(-0.5 * ((value - mean) / std) ** 2) if math.isfinite(std) else 0.5


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _sampler_match(a: str, b: str) -> float:
    a_name, b_name = normalize_sampler(a) or a, normalize_sampler(b) or b
    if a_name == b_name:
        return 1.0
    return 0.5 if _SCHEDULES.sub("", a_name) == _SCHEDULES.sub("", b_name) else 0.0


def _weighted(parts: dict[str, float], weights: dict[str, float]) -> float:
    return sum(weights[key] * parts[key] for key in weights)


class ProxyReward:
    """``offline-proxy-v1``: rates API calls from catalogue signals (see the module docstring).

    Implements the :class:`~diffagent.reward.base.Reward` protocol (``score_calls``), so the RRHF trainer
    can swap it for an image-based reward without change.
    """

    name = NAME

    def __init__(self, store: Store) -> None:
        self.store = store
        self._versions = self._load_versions()
        self._popularity = self._load_popularity()
        self._by_version, self._by_family, self._global = self._load_params()
        self._typical: dict[int, _Typical] = {}

    # -- catalogue statistics, read once ---------------------------------------------------------------

    def _load_versions(self) -> dict[int, _Version]:
        rows = self.store.conn.execute(
            "SELECT v.id, v.model_id, m.type, v.base_model, v.trained_words "
            "FROM versions v JOIN models m ON m.id = v.model_id"
        )
        return {r[0]: _Version(r[1], r[2], r[3], tuple(json.loads(r[4] or "[]"))) for r in rows}

    def _load_popularity(self) -> dict[int, float]:
        rows = self.store.conn.execute(
            "SELECT id, download_count, rating, rating_count FROM models WHERE type = 'Checkpoint'"
        ).fetchall()
        top = math.log1p(max((r[1] for r in rows), default=0)) or 1.0
        votes = sum(r[3] for r in rows if r[2] is not None)
        prior = sum(r[2] * r[3] for r in rows if r[2] is not None) / votes if votes else 2.5
        popularity = {}
        for model_id, downloads, rating, count in rows:
            count = count if rating is not None else 0
            rating_avg = ((rating or 0.0) * count + prior * RATING_PRIOR_COUNT) / (count + RATING_PRIOR_COUNT)
            popularity[model_id] = 0.6 * math.log1p(downloads) / top + 0.4 * rating_avg / 5.0
        return popularity

    def _load_params(self) -> tuple[dict[int, _ParamStats], dict[str | None, _ParamStats], _ParamStats]:
        """One SQL pass over the images, grouped by parameters: each image counts for the version that
        made it (:func:`~diffagent.catalog.made_with_sql`, over the whole catalogue), else for the version
        whose page shows it. Families and the whole catalogue are the sums of their versions."""
        by_version: dict[int, _ParamStats] = {}
        samplers: dict[str | None, str | None] = {}
        made, params = made_with_sql()
        rows = self.store.conn.execute(
            "SELECT COALESCE(made.version_id, made.page_version) AS v, "
            "i.sampler, i.steps, i.cfg_scale, i.gen_width, i.gen_height, i.clip_skip, COUNT(*) "
            f"FROM images i JOIN ({made}) made ON made.row = i.rowid GROUP BY 1, 2, 3, 4, 5, 6, 7",
            params,
        )
        for version_id, sampler, *params, count in rows:
            if sampler not in samplers:
                samplers[sampler] = normalize_sampler(sampler)
            stats = by_version.get(version_id)
            if stats is None:
                stats = by_version[version_id] = _ParamStats()
            stats.add(samplers[sampler], *params, count=count)
        by_family: dict[str | None, _ParamStats] = {}
        overall = _ParamStats()
        for version_id, stats in by_version.items():
            version = self._versions.get(version_id)
            by_family.setdefault(family(version.base_model) if version else None, _ParamStats()).merge(stats)
            overall.merge(stats)
        return by_version, by_family, overall

    def _typical_for(self, version_id: int) -> _Typical:
        if version_id not in self._typical:
            version = self._versions.get(version_id)
            fam = family(version.base_model) if version else None
            prior = self._by_family.get(fam) if fam is not None else None
            prior = prior if prior is not None else self._global
            own = self._by_version.get(version_id, _ParamStats())
            self._typical[version_id] = _Typical(
                sampler=_relative_shares(own.sampler, prior.sampler),
                clip_skip=_relative_shares(own.clip_skip, prior.clip_skip),
                orientation=_relative_shares(own.orientation, prior.orientation),
                log_steps=own.log_steps.pooled(prior.log_steps, _FLOOR["log_steps"]),
                cfg=own.cfg.pooled(prior.cfg, _FLOOR["cfg"]),
                log_area=own.log_area.pooled(prior.log_area, _FLOOR["log_area"]),
            )
        return self._typical[version_id]

    # -- validity --------------------------------------------------------------------------------------

    def problems(self, api: APICall) -> list[str]:
        """Why the call is not executable against the catalogue; empty when it is."""
        return validate_call(self.store, api)

    def _base_family(self, api: APICall) -> str | None:
        version = self._versions.get(api.checkpoint.version_id)
        return family(version.base_model if version else api.checkpoint.base_model)

    def _agreement(self, api: APICall, ref: APICall) -> dict[str, float]:
        if api.checkpoint.version_id == ref.checkpoint.version_id:
            checkpoint = 1.0
        elif api.checkpoint.model_id == ref.checkpoint.model_id:
            checkpoint = 0.7
        else:
            fam = self._base_family(api)
            checkpoint = 0.3 if fam is not None and fam == self._base_family(ref) else 0.0
        mine, theirs = {lora.model_id for lora in api.loras}, {lora.model_id for lora in ref.loras}
        loras = len(mine & theirs) / len(mine | theirs) if mine | theirs else 1.0
        steps = (
            max(0.0, 1.0 - abs(math.log(api.steps / ref.steps)) / math.log(2.0))
            if api.steps > 0 and ref.steps > 0
            else 0.0
        )
        if (api.width, api.height) == (ref.width, ref.height):
            size = 1.0
        else:
            same_side = _orientation(api.width, api.height) == _orientation(ref.width, ref.height)
            ratio = abs(math.log((api.width * api.height) / max(ref.width * ref.height, 1)))
            size = 0.5 * same_side + 0.5 * max(0.0, 1.0 - ratio / math.log(4.0))
        return {
            "checkpoint": checkpoint,
            "loras": loras,
            "sampler": _sampler_match(api.sampler, ref.sampler),
            "steps": steps,
            "cfg": max(0.0, 1.0 - abs(api.cfg_scale - ref.cfg_scale) / 4.5),
            "size": size,
            "clip_skip": float(api.clip_skip == ref.clip_skip),
        }

    def _typicality(self, api: APICall) -> dict[str, float]:
        typical = self._typical_for(api.checkpoint.version_id)
        sampler = normalize_sampler(api.sampler)
        area = math.log(max(api.width * api.height, 1))
        return {
            "sampler": typical.sampler.get(sampler, 0.0) if sampler else 0.0,
            "steps": _gauss(math.log(max(api.steps, 1)), typical.log_steps),
            "cfg": _gauss(api.cfg_scale, typical.cfg),
            "size": 0.5 * typical.orientation.get(_orientation(api.width, api.height), 0.0)
            + 0.5 * _gauss(area, typical.log_area),
            "clip_skip": typical.clip_skip.get(api.clip_skip, 0.0),
        }

    def _prompt(self, instruction: str, api: APICall) -> float:
        wanted = _words(instruction)
        recall = len(wanted & _words(api.prompt)) / len(wanted) if wanted else 1.0
        prompt = api.prompt.lower()
        needed = [
            v.trained_words
            for lora in api.loras
            if (v := self._versions.get(lora.version_id)) and v.trained_words
        ]
        triggers = (
            sum(any(word.lower() in prompt for word in words) for words in needed) / len(needed)
            if needed
            else 1.0
        )
        return 0.7 * recall + 0.3 * triggers

    def _evaluate(self, instruction: str, api: APICall, reference: APICall | None) -> dict[str, Any]:
        problems = self.problems(api)
        if problems:
            return {"reward": NAME, "total": MINIMUM, "valid": False, "problems": problems}
        parts: dict[str, dict[str, float]] = {"typicality": self._typicality(api)}
        components = {
            "typicality": _weighted(parts["typicality"], TYPICALITY_WEIGHTS),
            "popularity": self._popularity.get(api.checkpoint.model_id, 0.0),
            "prompt": self._prompt(instruction, api),
        }
        weights = WEIGHTS_WITHOUT_REFERENCE
        if reference is not None:
            parts["agreement"] = self._agreement(api, reference)
            components["agreement"] = _weighted(parts["agreement"], AGREEMENT_WEIGHTS)
            weights = WEIGHTS_WITH_REFERENCE
        total = min(1.0, max(0.0, _weighted(components, weights)))
        return {
            "reward": NAME,
            "total": total,
            "valid": True,
            "problems": [],
            "components": components,
            "weights": weights,
            "parts": parts,
        }

    # -- public ----------------------------------------------------------------------------------------

    def score(self, instruction: str, api: APICall, reference: APICall | None = None) -> float:
        """The proxy reward of one call in [0, 1]; ``reference`` is the real image's call when known."""
        return self._evaluate(instruction, api, reference)["total"]

    def score_many(
        self, instruction: str, calls: Sequence[APICall], reference: APICall | None = None
    ) -> list[float]:
        """The reward of each candidate call for one instruction (the RRHF trainer's batch)."""
        return [self._evaluate(instruction, call, reference)["total"] for call in calls]

    score_calls = score_many  # the Reward protocol

    def explain(self, instruction: str, api: APICall, reference: APICall | None = None) -> dict[str, Any]:
        """The total with every component, its weight and its parts (or the problems of an invalid call)."""
        return self._evaluate(instruction, api, reference)
