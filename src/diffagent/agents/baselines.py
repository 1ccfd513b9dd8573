"""The four baselines every DABench table carries: random, most downloaded, keyword search, TF-IDF neighbours.

They set the bar a real agent must clear, so each is an honest version of its idea: only catalogue
checkpoints (``Checkpoint``-type models of the safe catalogue selection, one latest usable version per
model), full executable calls with the checkpoint's typical parameters (:class:`ParamStats`, learnt from
the training pairs' images only), and ``k`` ranked alternatives with scores. Only the TF-IDF baseline
adds LoRAs: those of a near-duplicate training prompt, when they suit the chosen checkpoint.
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from ..bench.pairs import Pair
from ..catalog import CatalogFilter, Store, VersionRef, compatible, latest_versions, search_cards
from ..catalog.validate import CFG_RANGE, STEPS_RANGE
from ..errors import UserInputError
from ..protocols import Agent
from ..schema import VAE, Alternative, Answer, APICall, Evidence, LoRA
from .default.params import ParamStats, assemble_call, clamp, published_vaes, valid_size

__all__ = ["KeywordAgent", "PopularAgent", "RandomAgent", "TfidfAgent"]


class _CatalogAgent(Agent):
    """Shared plumbing: the checkpoint pool, parameter priors and answer assembly."""

    def __init__(
        self, store: Store, examples: Sequence[Pair], *, allow_nsfw: bool = False, allow_poi: bool = False
    ) -> None:
        self.store = store
        self.params = ParamStats.shared(store, {p.source.image_id for p in examples} if examples else None)
        self.flt = CatalogFilter(types=("Checkpoint",), allow_nsfw_models=allow_nsfw, allow_poi=allow_poi)
        entries = latest_versions(store, self.flt)
        if not entries:
            raise UserInputError(
                "the catalogue has no usable checkpoint: run `diffagent catalog import PATH`"
            )
        self.pool = [
            VersionRef(
                e.model_id, e.version_id, e.name, e.version_name, e.type, e.base_model, e.trained_words
            )
            for e in entries
        ]
        self.downloads = [e.downloads for e in entries]
        self.nameable = {ref.model_id for ref in self.pool}
        self._refs: dict[int, VersionRef | None] = {ref.version_id: ref for ref in self.pool}

    @functools.cached_property
    def vaes(self) -> dict[int, VAE]:
        """The VAE files checkpoint versions are published with (read on first need)."""
        return published_vaes(self.store)

    def ref(self, version_id: int) -> VersionRef | None:
        if version_id not in self._refs:
            self._refs[version_id] = self.store.version(version_id)
        return self._refs[version_id]

    def call(self, ref: VersionRef, prompt: str) -> APICall:
        params = self.params.for_version(ref.version_id, ref.base_model)
        return assemble_call(ref, prompt, params, vae=self.vaes.get(ref.version_id))

    def answer(self, ranked: Sequence[tuple[APICall, float]], **extra: Any) -> Answer:
        alternatives = [Alternative(**call.model_dump(), score=round(score, 6)) for call, score in ranked]
        return Answer(api=ranked[0][0], alternatives=alternatives, **extra)

    def popular(self, k: int, exclude: Collection[int] = ()) -> list[tuple[VersionRef, float]]:
        """The ``k`` most downloaded checkpoints whose model is not in ``exclude``, scored by downloads
        relative to the most downloaded one."""
        top = max(self.downloads[0], 1)
        picked: list[tuple[VersionRef, float]] = []
        for ref, count in zip(self.pool, self.downloads, strict=True):
            if len(picked) >= k:
                break
            if ref.model_id not in exclude:
                picked.append((ref, count / top))
        return picked


class RandomAgent(_CatalogAgent):
    """A uniformly random checkpoint; the same prompt and seed always give the same answer."""

    name = "random"

    def __init__(self, store: Store, examples: Sequence[Pair] = (), *, seed: int = 0, **safety: bool) -> None:
        super().__init__(store, examples, **safety)
        self.seed = seed

    def select(self, prompt: str, k: int = 5) -> Answer:
        rng = random.Random(f"{self.seed}\x00{prompt}")
        picked = rng.sample(self.pool, min(k, len(self.pool)))
        chance = 1 / len(self.pool)
        return self.answer([(self.call(ref, prompt), chance) for ref in picked])


class PopularAgent(_CatalogAgent):
    """The most downloaded checkpoints, whatever the prompt."""

    name = "popular"

    def select(self, prompt: str, k: int = 5) -> Answer:
        return self.answer([(self.call(ref, prompt), score) for ref, score in self.popular(k)])


class KeywordAgent(_CatalogAgent):
    """BM25 over checkpoint model cards (name, tags, trigger words, description); popular ones fill up."""

    name = "keyword"

    def select(self, prompt: str, k: int = 5) -> Answer:
        ranked: list[tuple[VersionRef, float]] = []
        # search_cards ranks all model cards before it keeps checkpoints: ask for more, keep k.
        for hit in search_cards(self.store, prompt, limit=8 * k, flt=self.flt)[:k]:
            ref = self.ref(hit.version_id)
            if ref is not None:
                ranked.append((ref, hit.score))
        ranked += [(ref, 0.0) for ref, _ in self.popular(k - len(ranked), {r.model_id for r, _ in ranked})]
        return self.answer(
            [(self.call(ref, prompt), score) for ref, score in ranked], low_confidence=not ranked[0][1]
        )


@dataclass(frozen=True)
class _Vote:
    model_id: int
    version_id: int
    weight: float
    weights: dict[int, float]
    """Neighbour index -> similarity, for the neighbours that voted for this model."""


class TfidfAgent(_CatalogAgent):
    """Nearest training prompts by TF-IDF cosine; their checkpoints vote, weighted by similarity.

    The answer takes its parameters from the neighbours that used the chosen checkpoint (similarity-weighted
    mode of sampler, size and clip skip, weighted median of steps and CFG, the best one's negative prompt),
    and copies that best neighbour's LoRAs when its prompt is a near duplicate (cosine >= ``lora_similarity``)
    and they suit the checkpoint's base model.
    """

    name = "tfidf"

    def __init__(
        self,
        store: Store,
        examples: Sequence[Pair] = (),
        *,
        neighbours: int = 25,
        lora_similarity: float = 0.5,
        **safety: bool,
    ) -> None:
        if not examples:
            raise UserInputError(
                "the tfidf agent learns from DABench pairs: build them with `diffagent bench build`"
            )
        super().__init__(store, examples, **safety)
        self.examples = list(examples)
        self.neighbours = neighbours
        self.lora_similarity = lora_similarity
        self.vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, dtype=np.float32)
        self.matrix = self.vectorizer.fit_transform([p.instruction for p in self.examples]).T.tocsr()

    def select(self, prompt: str, k: int = 5) -> Answer:
        return self.select_batch([prompt], k)[0]

    def select_batch(self, prompts: Sequence[str], k: int = 5) -> list[Answer]:
        queries = self.vectorizer.transform(list(prompts))
        answers: list[Answer] = []
        for start in range(0, len(prompts), 256):
            sims = (queries[start : start + 256] @ self.matrix).toarray()
            for row, prompt in zip(sims, prompts[start : start + 256], strict=False):
                answers.append(self._answer(prompt, row, k))
        return answers

    def _nearest(self, sims: np.ndarray) -> list[int]:
        """Indices of the closest training prompts with any word in common, closest first."""
        count = min(self.neighbours, len(sims))
        top = np.argpartition(-sims, count - 1)[:count]
        return [int(i) for i in top[np.argsort(-sims[top], kind="stable")] if sims[i] > 0]

    def _votes(self, sims: np.ndarray, nearest: list[int]) -> list[_Vote]:
        by_model: dict[int, dict[int, float]] = defaultdict(dict)
        for i in nearest:
            by_model[self.examples[i].api.checkpoint.model_id][i] = float(sims[i])
        votes = []
        for model_id, weights in by_model.items():
            if model_id not in self.nameable:
                continue  # a model the user's filter leaves out (explicit, real person)
            per_version: dict[int, float] = defaultdict(float)
            for i, w in weights.items():
                per_version[self.examples[i].api.checkpoint.version_id] += w
            version_id = max(per_version, key=lambda v: (per_version[v], -v))
            votes.append(_Vote(model_id, version_id, sum(weights.values()), weights))
        return sorted(votes, key=lambda v: (-v.weight, v.model_id))

    def _answer(self, prompt: str, sims: np.ndarray, k: int) -> Answer:
        ranked: list[tuple[APICall, float]] = []
        nearest = self._nearest(sims)
        for vote in self._votes(sims, nearest):
            ref = self.ref(vote.version_id)
            if ref is not None and ref.model_type == "Checkpoint":
                ranked.append((self._neighbour_call(ref, prompt, vote.weights), vote.weight))
            if len(ranked) == k:
                break
        taken = {call.checkpoint.model_id for call, _ in ranked}
        ranked += [(self.call(ref, prompt), 0.0) for ref, _ in self.popular(k - len(ranked), taken)]
        evidence = [
            Evidence(
                image_id=self.examples[i].source.image_id,
                model_id=self.examples[i].source.model_id,
                version_id=self.examples[i].source.version_id,
                prompt=self.examples[i].instruction,
                similarity=round(float(sims[i]), 4),
            )
            for i in nearest[:3]
        ]
        return self.answer(ranked, evidence=evidence, low_confidence=not evidence)

    def _neighbour_call(self, ref: VersionRef, prompt: str, weights: dict[int, float]) -> APICall:
        """Parameters voted by the neighbours that used this checkpoint; LoRAs of a near duplicate."""
        calls = [(self.examples[i].api, w) for i, w in weights.items()]  # best neighbour first
        best, best_sim = calls[0]
        params = {
            "sampler": _weighted_mode([(c.sampler, w) for c, w in calls]),
            "steps": round(clamp(_weighted_median([(c.steps, w) for c, w in calls]), STEPS_RANGE)),
            "cfg_scale": float(clamp(_weighted_median([(c.cfg_scale, w) for c, w in calls]), CFG_RANGE)),
            "clip_skip": _weighted_mode([(c.clip_skip, w) for c, w in calls]),
            "negative_prompt": best.negative_prompt,
        }
        prior = self.params.for_version(ref.version_id, ref.base_model)
        size = _weighted_mode([((c.width, c.height), w) for c, w in calls if valid_size(c.width, c.height)])
        params["width"], params["height"] = size or (prior["width"], prior["height"])
        loras: list[LoRA] = []
        if best_sim >= self.lora_similarity and best.checkpoint.version_id == ref.version_id:
            for lora in best.loras:
                lora_ref = self.ref(lora.version_id)
                if lora_ref is not None and compatible(lora_ref.base_model, ref.base_model):
                    loras.append(lora)
        return assemble_call(ref, prompt, params, loras, vae=self.vaes.get(ref.version_id))


def _weighted_mode(values: Sequence[tuple[Any, float]]) -> Any:
    """The value with the largest total weight (the first seen among ties), or None for no values."""
    totals: dict[Any, float] = defaultdict(float)
    for value, weight in values:
        totals[value] += weight
    return max(totals, key=totals.__getitem__) if totals else None


def _weighted_median(values: Sequence[tuple[float, float]]) -> float:
    ordered = sorted(values)
    half = sum(w for _, w in ordered) / 2
    running = 0.0
    for value, weight in ordered:
        running += weight
        if running >= half:
            return value
    return ordered[-1][0]
