"""The default agent: retrieval over the catalogue's examples and cards, then a learned ranker.

For a prompt it finds the nearest example prompts and the best-matching model cards, scores every
candidate checkpoint with a LambdaRank model (:mod:`.ranker`), and answers with the top ones. Parameters
come from the examples made with the chosen checkpoint, weighted by how close their prompts are, backed by
all of that checkpoint's examples and, for a checkpoint without any, by its catalogue statistics
(:class:`.params.ParamStats`). LoRAs come from :mod:`.loras`. Every checkpoint and LoRA
is a catalogue row, so the answer cannot name anything that does not exist.

The index and the ranker are built once per catalogue revision and set of examples (30-50 s on two
cores for the full catalogue) and kept under ``DIFFAGENT_HOME/default-agent``. Parameter weights were
tuned on DABench val (``params`` 0.57 with the nearest same-checkpoint examples alone, 0.61 with the
other weights below, 0.63 with the shifted candidate settings).
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import time
import weakref
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ... import _npz
from ..._fork import ForkedWorkers, WorkerDied, can_fork, worker_count
from ..._npz import CacheError
from ...bench.pairs import Pair
from ...bench.text import clean_prompt
from ...catalog import CatalogFilter, Store, VersionRef, base_models_named
from ...catalog.cards import CardLimits, card_limits
from ...catalog.families import Recipe, recipe
from ...catalog.styles import style_phrases
from ...catalog.validate import CFG_RANGE, STEPS_RANGE
from ...config import home
from ...errors import UserInputError
from ...protocols import Agent
from ...schema import VAE, Alternative, Answer, APICall, Evidence, Hires
from ...train.ranker import Ranker, train_ranker
from .embeddings import CatalogEmbeddings, embedding_words
from .index import SAMPLERS, Checkpoints, Examples, PromptIndex
from .loras import LoraIndex, word_phrase
from .params import (
    ParamStats,
    assemble_call,
    clamp,
    consensus_negative,
    fit_settings,
    orientation_of,
    published_vaes,
)
from .ranker import (
    FEATURES,
    Signals,
    candidates,
    feature_matrix,
    fold_counts,
    general_models,
    signals,
)

__all__ = ["FORMAT", "DefaultIndex", "RetrievalAgent", "build_default_agent", "cache_dir", "train_default"]

FORMAT = 19
"""Bump when the cached index or ranker changes shape: older caches are then rebuilt."""
Progress = Callable[[int, int], None]

LOW_SIMILARITY = 0.2
"""Below this cosine to the nearest example, and with no card or LoRA match, an answer is low-confidence."""
LOW_CHANCE = 0.3
"""An answer whose pick has less than this ranker probability among the candidates is low-confidence
(calibrated on DABench val, see docs/benchmarks.md); so is a prompt mostly in a non-Latin script, which
the examples (nearly all English) cannot match."""

STYLE_OVERRIDE_BELOW = 0.8
"""A pick whose style does not suit the prompt's clear style yields to one that does unless its ranker
probability reaches this (DABench val: model@1 +0.009 against always yielding, intent set -0.004)."""


def foreign(text: str) -> bool:
    """Whether ``text`` is not written in English, the language of nearly all examples: most of its letters
    are outside the Latin script (Chinese, Japanese, Cyrillic ...), or its words are mostly French, German,
    Spanish or Italian by their function words (a tag list naming "louise de la valliere" is not)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum(c.isascii() or "\u00c0" <= c <= "\u024f" for c in letters)
    if latin < 0.5 * len(letters):
        return True
    words = _WORD.findall(text.lower())
    others = sum(word in _OTHER_FUNCTION_WORDS for word in words)
    english = sum(word in _ENGLISH_FUNCTION_WORDS for word in words)
    return others >= 2 and others >= 0.3 * len(words) and others > 2 * english


_WORD = re.compile(r"[^\W\d_]+")
_FRENCH = "un une le la les des du de sur avec dans et au aux pour est sous chez très où"
_GERMAN = "der das und ein eine einem einer einen mit auf im ist den dem nicht zum zur bei unter über"
_SPANISH = "el los las una con en y del por para sobre es muy"
_ITALIAN = "il gli della delle nel nella sul uno"
_OTHER_FUNCTION_WORDS = frozenset(" ".join((_FRENCH, _GERMAN, _SPANISH, _ITALIAN)).split(" "))
_ENGLISH = "the a an of and with in on at by for is from to his her its"
_ENGLISH_FUNCTION_WORDS = frozenset(_ENGLISH.split(" "))


_NAME_MATCH = 0.5
_NEAR_DUPLICATE = 0.8
"""An example this close with the same checkpoint lends the answer its LoRAs."""
_PRIOR_WEIGHT = 0.3
"""Weight of a checkpoint's whole example distribution against its nearest examples, for parameters."""
_OTHER_WEIGHT = 0.3
"""Weight of the nearest examples made with other checkpoints, for parameters."""
_SIM_POWER = 2.0
"""Examples weigh their cosine similarity to the prompt to this power."""
_CONSENSUS_CANDIDATES = 12
_STEP_SHIFT = 0.15
_CFG_SHIFT = 1.0
_CFG_SHIFTS = np.array([0.0, -_CFG_SHIFT, _CFG_SHIFT])
_STEP_FACTORS = np.array([1.0, 1 - _STEP_SHIFT, 1 + _STEP_SHIFT])
"""Settings tried around each of the heaviest observed ones (see :func:`_consensus`)."""
_PRIOR_SETTINGS = 30
_HIRES_SHARE = 0.5
"""The answer carries a hires fix when the examples holding this share of the weight used one."""
_EVIDENCE = 3
_NAMED_DEPTH = 10
"""How deep in the ranking a checkpoint named for the prompt's named style may be to come first."""


_BATCH = 64
"""Prompts answered together: each holds a dense row per example for its similarities and their ranks,
so a chunk of 64 peaks about 340 MB lower than one of 256, at the same speed (scripts/bench_chunks.py)."""
_SHARED_FROM = 128
"""A batch of at least this many prompts is shared among the agent's worker processes, if it has any."""


def cache_dir() -> Path:
    return home() / "default-agent"


@dataclass
class _Settings:
    """The most common (sampler, steps, cfg) settings of one checkpoint model, with their shares."""

    sampler: np.ndarray
    steps: np.ndarray
    cfg: np.ndarray
    share: np.ndarray


def _common_settings(examples: Examples, rows: np.ndarray) -> _Settings:
    keys = np.stack([examples.sampler[rows], examples.steps[rows], examples.cfg[rows]], axis=1)
    unique, counts = np.unique(keys, axis=0, return_counts=True)
    top = np.argsort(-counts, kind="stable")[:_PRIOR_SETTINGS]
    return _Settings(
        unique[top, 0].astype(np.int16),
        unique[top, 1].astype(np.float32),
        unique[top, 2].astype(np.float32),
        (counts[top] / len(rows)).astype(np.float32),
    )


def _negatives(
    examples: Examples, checkpoints: Checkpoints, embeddings: Collection[str]
) -> tuple[dict[int, str], dict[float, str]]:
    """The consensus negative prompt of each model's examples, and of each family's (for models whose
    own examples agree on nothing, or that have none); of the embedding names, only the catalogue's
    ``embeddings`` are kept."""
    by_model: dict[int, list[str]] = {}
    by_family: dict[float, list[str]] = {}
    for model, negative in zip(examples.model.tolist(), examples.negative, strict=True):
        by_model.setdefault(model, []).append(negative)
        by_family.setdefault(float(checkpoints.family_code[model]), []).append(negative)
    models = {
        model: consensus_negative(negatives, embeddings=embeddings) for model, negatives in by_model.items()
    }
    families = {
        code: consensus_negative(negatives, embeddings=embeddings) for code, negatives in by_family.items()
    }
    return {model: text for model, text in models.items() if text}, families


def _strict_first(examples: Examples, rows: np.ndarray) -> np.ndarray:
    """A model's hash-resolved examples where it has any, else its page-only ones."""
    strict = rows[examples.kind[rows] == 0]
    return strict if len(strict) else rows


@dataclass
class _SettingsTable:
    """Every model's most common settings in flat arrays: model m's are rows ``offsets[m]:offsets[m+1]``."""

    offsets: np.ndarray
    sampler: np.ndarray
    steps: np.ndarray
    cfg: np.ndarray
    share: np.ndarray

    @classmethod
    def build(cls, examples: Examples, n_models: int) -> _SettingsTable:
        order = np.argsort(examples.model, kind="stable")
        bounds = np.searchsorted(examples.model[order], np.arange(n_models + 1))
        parts = [
            _common_settings(examples, _strict_first(examples, order[bounds[m] : bounds[m + 1]]))
            for m in range(n_models)
            if bounds[m + 1] > bounds[m]
        ]
        sizes = np.zeros(n_models, dtype=np.int64)
        sizes[[m for m in range(n_models) if bounds[m + 1] > bounds[m]]] = [len(p.share) for p in parts]
        empty = _Settings(*(np.zeros(0, dtype=d) for d in (np.int16, np.float32, np.float32, np.float32)))
        return cls(
            offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            sampler=np.concatenate([empty.sampler, *(p.sampler for p in parts)]),
            steps=np.concatenate([empty.steps, *(p.steps for p in parts)]),
            cfg=np.concatenate([empty.cfg, *(p.cfg for p in parts)]),
            share=np.concatenate([empty.share, *(p.share for p in parts)]),
        )

    def get(self, model: int) -> _Settings | None:
        """Model ``model``'s settings, or None where the examples show none."""
        start, end = int(self.offsets[model]), int(self.offsets[model + 1])
        if start == end:
            return None
        rows = slice(start, end)
        return _Settings(self.sampler[rows], self.steps[rows], self.cfg[rows], self.share[rows])


@dataclass
class DefaultIndex:
    """Everything the agent loads from its cache: index, LoRA tables, per-model settings, ranker."""

    revision: int
    key: str
    checkpoints: Checkpoints
    examples: Examples
    prompts: PromptIndex
    loras: LoraIndex
    counts: np.ndarray
    settings: _SettingsTable
    negatives: dict[int, str]
    """Consensus negative prompt per model position (models whose examples agree on something)."""
    family_negatives: dict[float, str]
    """Consensus negative prompt per family code, for the other models."""
    ranker: Ranker
    pair_image_ids: np.ndarray
    """Images of every pair the agent was given: the catalogue statistics it falls back on see only these."""
    report: dict[str, float]

    def negative(self, model: int) -> str:
        """The negative prompt to send with model position ``model`` (see :func:`consensus_negative`)."""
        if model in self.negatives:
            return self.negatives[model]
        return self.family_negatives.get(float(self.checkpoints.family_code[model]), "")

    def signals(self, texts: Sequence[str], folds: np.ndarray | None = None) -> Signals:
        return signals(texts, self.prompts, self.examples, self.checkpoints, self.loras, self.counts, folds)

    @classmethod
    def build(
        cls,
        store: Store,
        pairs: Sequence[Pair],
        key: str,
        progress: Progress | None = None,
        page_examples: bool = True,
        workers: int = 1,
    ) -> DefaultIndex:
        """Index and ranker over ``pairs`` (and, with ``page_examples``, the checkpoint-page images of
        the same splits: see :meth:`Examples.build`); ``workers`` processes share the ranker's features."""
        began = time.perf_counter()
        if not len(pairs):
            raise UserInputError(_NO_PAIRS)
        checkpoints = Checkpoints.build(store)
        examples = Examples.build(store, pairs, checkpoints, page_examples)
        if not len(examples):
            raise UserInputError(
                "the default agent needs DABench pairs whose checkpoints are in the catalogue"
            )
        checkpoints.learn_styles(examples)
        prompts = PromptIndex.build(examples, len(checkpoints))
        loras = LoraIndex.build(store, checkpoints, examples)
        counts = fold_counts(examples, len(checkpoints))
        allowed = np.ones(len(checkpoints), dtype=bool)

        def featurize(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            texts = [examples.texts[i] for i in rows]
            sig = signals(texts, prompts, examples, checkpoints, loras, counts, examples.fold[rows])
            picked = candidates(sig, allowed, checkpoints)
            return picked, feature_matrix(sig, picked, checkpoints), examples.model[rows]

        ranker, report = train_ranker(featurize, len(examples), FEATURES, progress=progress, workers=workers)
        report["examples"] = float(len(examples))
        report["page_examples"] = float((examples.kind == 1).sum())
        negatives, family_negatives = _negatives(examples, checkpoints, embedding_words(store))
        report["build_s"] = round(time.perf_counter() - began, 1)
        return cls(
            revision=store.revision,
            key=key,
            checkpoints=checkpoints,
            examples=examples,
            prompts=prompts,
            loras=loras,
            counts=counts,
            settings=_SettingsTable.build(examples, len(checkpoints)),
            negatives=negatives,
            family_negatives=family_negatives,
            ranker=ranker,
            pair_image_ids=np.array([p.source.image_id for p in pairs], dtype=np.int64),
            report=report,
        )


def examples_key(store: Store, pairs: Sequence[Pair]) -> str:
    """Names the index for this catalogue content and these examples: any change gives a new key.

    The store by its identity and revision (not its path: a moved ``DIFFAGENT_HOME`` keeps its cache), the
    examples by their files' fingerprint when they come from a DABench folder, else by their content.
    """
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{FORMAT}|{store.identity}|{store.revision}|".encode())
    fingerprint = getattr(pairs, "fingerprint", None)
    if isinstance(fingerprint, str):
        digest.update(fingerprint.encode())
    else:
        for pair in pairs:
            digest.update(
                f"{pair.source.image_id}:{pair.api.checkpoint.version_id}:{pair.instruction}\n".encode()
            )
    return digest.hexdigest()


_in_memory: weakref.WeakValueDictionary[str, DefaultIndex] = weakref.WeakValueDictionary()
"""Indexes some agent of this process holds, by key: agents that differ only in what they may name (NSFW,
real-person, base-model or library filters, a mask at query time) share one index, not one copy each."""


def _load_or_build(
    store: Store, pairs: Sequence[Pair], rebuild: bool, progress: Progress | None, workers: int = 1
) -> DefaultIndex:
    key = examples_key(store, pairs)
    index = None if rebuild else _in_memory.get(key)
    if index is not None:
        return index
    index = _load_or_build_file(store, pairs, key, rebuild, progress, workers)
    _in_memory[key] = index
    return index


def _load_or_build_file(
    store: Store, pairs: Sequence[Pair], key: str, rebuild: bool, progress: Progress | None, workers: int
) -> DefaultIndex:
    path = cache_dir() / f"{key}.npz"
    meta = {"format": FORMAT, "key": key}
    if path.is_file() and not rebuild:
        try:
            return _npz.load(path, DefaultIndex, meta)
        except CacheError as exc:
            print(f"diffagent: rebuilding the default agent's index: {exc}", file=sys.stderr)
    index = DefaultIndex.build(store, pairs, key, progress, workers=workers)
    _npz.save(path, index, meta)
    # keep the few most recent indexes (e.g. train-only for eval and all splits for select)
    for old in sorted(cache_dir().glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)[3:]:
        old.unlink(missing_ok=True)
    for stale in cache_dir().glob("*.pkl"):  # the pickles of earlier versions: never loaded
        stale.unlink(missing_ok=True)
    return index


_Votes = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Recipe | None, np.ndarray | None]
"""Samplers, steps, CFGs and weights of the voting examples, the family's bounds and the seed mask."""


def _consensus(
    samplers: np.ndarray,
    steps: np.ndarray,
    cfgs: np.ndarray,
    weights: np.ndarray,
    bounds: Recipe | None = None,
    seeds: np.ndarray | None = None,
) -> tuple[int, float, float]:
    """The (sampler, steps, cfg) within the family's ranges (``bounds``) the weighted examples agree on most.

    An example agrees with a setting that uses its sampler with steps within 25% and CFG within 1.5 of its
    own (what counts as the same setting on DABench). Candidates are the heaviest settings of the examples
    and, since the best point often lies between two of them (20 and 30 steps are both within reach of
    24), each with steps 15% lower or higher and CFG 1 lower or higher, all moved into the ranges first
    (so that examples at 80 steps still vote for 60 when the family stops there); the heaviest wins.
    Equal settings are merged first, so the work grows with the distinct settings only. With ``seeds``
    (a mask over the examples), only the settings of those examples are candidates; the others still vote.
    """
    return _consensus_many([(samplers, steps, cfgs, weights, bounds, seeds)])[0]


def _consensus_many(votes: Sequence[_Votes]) -> list[tuple[int, float, float]]:
    """:func:`_consensus` of each of ``votes`` (none empty), in one pass over all of them: an answer's five
    alternatives cost one set of array operations instead of five."""
    if not votes:
        return []
    n = len(votes)
    row = np.repeat(np.arange(n, dtype=np.int64), [len(v[0]) for v in votes])
    samplers, steps, cfgs, weights = (np.concatenate([v[i] for v in votes]) for i in range(4))
    # one integer per (vote, sampler, steps, CFG in hundredths), so that merging is a 1-D unique
    keys = (
        (row << 60)
        | (samplers.astype(np.int64) << 40)
        | (steps.astype(np.int64) << 20)
        | np.round(cfgs * 100).astype(np.int64)
    )
    unique, where = np.unique(keys, return_inverse=True)
    owner = unique >> 60
    seeded = np.ones(len(unique), dtype=bool)
    has_seeds = np.array([v[5] is not None and bool(v[5].any()) for v in votes])
    if has_seeds.any():
        masks = [v[5] if v[5] is not None else np.zeros(len(v[0]), dtype=bool) for v in votes]
        seeded = (np.bincount(where, np.concatenate(masks), len(unique)) > 0) | ~has_seeds[owner]
    merged = np.bincount(where, weights=weights, minlength=len(unique))
    u_samplers = (unique >> 40) & 0xFFFFF
    u_steps = ((unique >> 20) & 0xFFFFF).astype(np.float32)
    u_cfgs = (unique & 0xFFFFF) / 100.0
    # each vote's heaviest seeded settings, heaviest first (ties in setting order), grouped by vote
    order = np.lexsort((-merged, owner))
    order = order[seeded[order]]
    rank = np.arange(len(order)) - np.searchsorted(owner[order], np.arange(n))[owner[order]]
    heaviest = order[rank < _CONSENSUS_CANDIDATES]
    counts = np.bincount(owner[heaviest], minlength=n)
    # candidates laid out per vote as (CFG shift, steps shift, setting), flattened, votes in order
    block = 9 * counts
    cand_row = np.repeat(np.arange(n), block)
    block_start = np.concatenate([[0], np.cumsum(block)])
    t = np.arange(block_start[-1]) - block_start[cand_row]
    per = counts[cand_row]
    setting = heaviest[np.concatenate([[0], np.cumsum(counts)])[cand_row] + t % per]
    cand_steps = np.round(u_steps[setting] * _STEP_FACTORS[(t // per) % 3])
    cand_cfgs = u_cfgs[setting] + _CFG_SHIFTS[t // (3 * per)]
    cand_samplers = u_samplers[setting]
    lowest = np.full((n, len(SAMPLERS)), -np.inf)
    limits = np.tile([np.inf, -np.inf, np.inf], (n, 1))
    for i, bounds in enumerate(v[4] for v in votes):
        if bounds is not None:
            lowest[i], limits[i, 0] = _steps_bounds(bounds)
            limits[i, 1:] = bounds.cfg_range
    cand_steps = np.clip(cand_steps, lowest[cand_row, cand_samplers], limits[cand_row, 0])
    cand_cfgs = np.clip(cand_cfgs, limits[cand_row, 1], limits[cand_row, 2])
    settings_start = np.searchsorted(owner, np.arange(n + 1))
    out = []
    for i in range(n):
        c0, c1, u0, u1 = block_start[i], block_start[i + 1], settings_start[i], settings_start[i + 1]
        agree = (
            (cand_samplers[c0:c1, None] == u_samplers[None, u0:u1])
            & (np.abs(cand_steps[c0:c1, None] - u_steps[None, u0:u1]) <= 0.25 * u_steps[None, u0:u1] + 1e-6)
            & (np.abs(cand_cfgs[c0:c1, None] - u_cfgs[None, u0:u1]) <= 1.5 + 1e-6)
        )
        best = c0 + int(np.argmax(agree @ merged[u0:u1]))
        out.append((int(cand_samplers[best]), float(cand_steps[best]), float(cand_cfgs[best])))
    return out


@functools.cache
def _steps_bounds(bounds: Recipe) -> tuple[np.ndarray, int]:
    """The lowest steps of each sampler code (:data:`SAMPLERS`) and the highest, for a family's recipe."""
    return np.array([bounds.steps_for(name)[0] for name in SAMPLERS]), bounds.steps_range[1]


def _weighted_mode(values: np.ndarray, weights: np.ndarray) -> Any:
    """The value with the largest total weight (the first seen among ties); ``values`` must not be empty."""
    totals: dict[Any, float] = {}
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        totals[value] = totals.get(value, 0.0) + weight
    return max(totals, key=totals.__getitem__)


class RetrievalAgent(Agent):
    """Nearest examples and model cards, ranked by LambdaRank; see the module docstring."""

    name = "default"

    style_first = True
    """Put the best candidate that suits the prompt's clear style first (see :meth:`_answer`)."""
    general_fallback = True
    """Answer a low-confidence prompt with the best-scored well-made model of its style."""

    def __init__(self, store: Store, index: DefaultIndex, flt: CatalogFilter, workers: int = 1) -> None:
        self.store = store
        self.index = index
        self.flt = flt
        self.workers = worker_count(workers)
        """Processes a large batch is shared among: forked copies of this agent (where the system forks
        and the catalogue is a file), each answering its share exactly as this process would."""
        self._pool: ForkedWorkers | None = None
        self.allowed = index.checkpoints.allowed(flt)
        if not self.allowed.any():
            raise UserInputError("no checkpoint in the catalogue passes the base-model, NSFW and poi filter")
        self._params: ParamStats | None = None
        self._cards: dict[int, CardLimits] = {}

    @property
    def params(self) -> ParamStats:
        """Catalogue statistics for checkpoints the examples do not show (built on first need)."""
        if self._params is None:
            self._params = ParamStats.shared(self.store, self.index.pair_image_ids.tolist())
        return self._params

    @functools.cached_property
    def embeddings(self) -> CatalogEmbeddings:
        """The catalogue's textual inversions this agent may name (read on first need)."""
        return CatalogEmbeddings(self.store, self.flt)

    @functools.cached_property
    def vaes(self) -> dict[int, VAE]:
        """The VAE files checkpoint versions are published with (read on first need)."""
        return published_vaes(self.store)

    def card(self, model_id: int) -> CardLimits:
        """The limits model ``model_id``'s card states (read on first need)."""
        if model_id not in self._cards:
            row = self.store.conn.execute(
                "SELECT description FROM models WHERE id = ?", (model_id,)
            ).fetchone()
            self._cards[model_id] = card_limits(row[0] if row else None)
        return self._cards[model_id]

    def select(self, prompt: str, k: int = 5) -> Answer:
        return self.select_batch([prompt], k)[0]

    def select_batch(self, prompts: Sequence[str], k: int = 5) -> list[Answer]:
        if k < 1:
            raise UserInputError("k must be at least 1")
        for prompt in prompts:
            if not isinstance(prompt, str) or not prompt.strip():
                raise UserInputError("the prompt is empty")
        texts = [clean_prompt(p) for p in prompts]
        if not all(texts):
            raise UserInputError("the prompt is empty once its generator tags (<lora:...>) are removed")
        pool = self._workers() if len(prompts) >= _SHARED_FROM else None
        if pool is None:
            return self._answers(list(prompts), texts, k)
        size = min(_BATCH, -(-len(prompts) // self.workers))
        shares = [(list(prompts[s : s + size]), texts[s : s + size], k) for s in range(0, len(prompts), size)]
        try:
            return [answer for share in pool.map(shares) for answer in share]
        except WorkerDied:
            self.close()  # the next batch starts new workers
            raise

    def _workers(self) -> ForkedWorkers | None:
        """The worker processes, started on first need; None when this agent answers in its own process
        (one worker, no fork, or a catalogue in memory that no other process can open)."""
        if self._pool is None and self.workers > 1 and self.store.path is not None and can_fork():
            # a weak reference, so that the workers do not keep the agent alive: its end stops them
            agent = weakref.ref(self)
            self._pool = ForkedWorkers(
                functools.partial(_answer_share, agent), self.workers, functools.partial(_adopt, agent)
            )
        return self._pool

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the workers started so far (none until a large batch needs them)."""
        return list(self._pool.pids) if self._pool is not None else []

    def close(self) -> None:
        """Stop the worker processes, if any were started (they also stop when this process exits)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _answers(self, prompts: list[str], texts: list[str], k: int) -> list[Answer]:
        """Answers in this process, a chunk of prompts at a time (their cleaned ``texts`` given)."""
        answers: list[Answer] = []
        for start in range(0, len(prompts), _BATCH):
            chunk, texts_here = prompts[start : start + _BATCH], texts[start : start + _BATCH]
            sig = self.index.signals(texts_here)
            ckpts = self.index.checkpoints
            picked = candidates(sig, self.allowed, ckpts)
            scores = self.index.ranker.score(feature_matrix(sig, picked, ckpts), picked.shape[1])
            general = general_models(sig, self.allowed, ckpts)
            general_scores = self.index.ranker.score(feature_matrix(sig, general, ckpts), general.shape[1])
            for row, (prompt, text) in enumerate(zip(chunk, texts_here, strict=True)):
                fallback = (general[row], general_scores[row])
                answers.append(self._answer(prompt, text, sig, row, picked[row], scores[row], k, fallback))
        return answers

    def _answer(
        self,
        prompt: str,
        text: str,
        sig: Signals,
        row: int,
        picked: np.ndarray,
        scores: np.ndarray,
        k: int,
        general: tuple[np.ndarray, np.ndarray],
    ) -> Answer:
        """The answer from the ranker's ``scores`` of the candidates ``picked``, with the user rules; a
        low-confidence answer falls back to the best-scored of the ``general`` models (models, scores)."""
        order = np.argsort(-scores, kind="stable")
        chances = np.exp(scores - scores.max())
        chances /= chances.sum()
        confidence = float(chances[order[0]])
        neighbours, sims = sig.neighbours[row], sig.sims[row]
        relevance = sig.lora_relevance[row].toarray().ravel()
        explicit = self.index.loras.explicit(prompt)
        matched = (
            sims[0] >= LOW_SIMILARITY
            or sig.dense["name"][row].max(initial=0.0) >= _NAME_MATCH
            or bool(explicit)
            or relevance.any()
        )
        sure = matched and confidence >= LOW_CHANCE and not foreign(text)
        styles = style_phrases(text)
        named = (
            self._naming(
                styles, picked, order, sig.dense["style_suits"][row] if sig.intent[row] >= 0 else None
            )
            if self.style_first and confidence < STYLE_OVERRIDE_BELOW
            else None
        )
        if named is not None:
            # the prompt names a style ("in the style of Van Gogh") that a well-ranked checkpoint is named
            # for and the ranker's pick is not: that checkpoint first
            order = np.concatenate([order[named : named + 1], np.delete(order, named)])
        elif not sure and self.general_fallback and len(general[0]):
            # nothing vouches for the ranker's pick: the best-scored of the well-made general models of
            # the prompt's style (of all, without one) answers
            best = int(general[0][np.argmax(general[1])])
            at = np.flatnonzero(picked == best)
            first = int(at[0]) if len(at) else len(picked)
            if not len(at):  # not a candidate: it joins them, to come first
                picked, chances = np.append(picked, best), np.append(chances, 0.0)
            order = np.concatenate([[first], order[order != first]])
        elif (
            self.style_first
            and sig.intent[row] >= 0
            and sig.dense["style_suits"][row, picked[order[0]]] == 0
            and confidence < STYLE_OVERRIDE_BELOW
        ):
            # the prompt names a style the ranker's pick does not make, and the pick is not certain (a near
            # copy of an example made with it outweighs its style profile): the best pick that makes it first
            fits = np.flatnonzero(sig.dense["style_suits"][row, picked[order]] == 1)
            if len(fits):
                order = np.concatenate([order[fits[:1]], np.delete(order, fits[0])])
        order = order[:k]
        # a user's <lora:...> the catalogue does not know is kept in the answer (unresolved_loras), never in
        # the prompt sent: generator syntax there could load any file (see diffagent.textsafety)
        unknown = self.index.loras.unknown(prompt)
        sent = text
        wording = (orientation_of(text), styles)  # read once, used by every alternative
        calls = self._calls(
            sent, [int(picked[p]) for p in order], neighbours, sims, relevance, explicit, wording
        )
        # scores stay in rank order: a pick moved first (style, general model) takes the first score
        ranked = [
            (call, float(chance)) for call, chance in zip(calls, -np.sort(-chances[order]), strict=True)
        ]
        examples = self.index.examples
        evidence = [
            Evidence(
                image_id=int(examples.image_id[i]),
                model_id=int(self.index.checkpoints.model_ids[examples.model[i]]),
                version_id=int(examples.version_id[i]),
                prompt=examples.texts[i],
                url=examples.url[i],
                similarity=round(float(s), 4),
            )
            for i, s in zip(neighbours[:_EVIDENCE], sims[:_EVIDENCE], strict=True)
            if s > 0
        ]
        # the calls are validated already: copy their fields rather than validate them again
        alternatives = [
            Alternative.model_construct(**dict(call), score=round(score, 6)) for call, score in ranked
        ]
        return Answer(
            api=ranked[0][0],
            alternatives=alternatives,
            evidence=evidence,
            low_confidence=not sure,
            unresolved_loras=unknown,
        )

    def _naming(
        self, styles: list[str], picked: np.ndarray, order: np.ndarray, suits: np.ndarray | None
    ) -> int | None:
        """Where in ``order`` (within the first :data:`_NAMED_DEPTH`) the first checkpoint named for one of
        the prompt's named ``styles`` is, when the ranker's pick is not named for any; else None. With
        ``suits`` (the prompt's clear style: 1 for the models that make it), only a checkpoint that also
        makes that style counts (a "sticker" checkpoint is no answer for an anime sticker)."""
        if not styles:
            return None
        wanted = [f" {word_phrase(style)} " for style in styles]

        def names_it(position: int) -> bool:
            name = f" {word_phrase(self.index.checkpoints.versions[int(picked[position])][0].model_name)} "
            return any(style in name for style in wanted)

        if names_it(int(order[0])):
            return None
        for i in range(1, min(_NAMED_DEPTH, len(order))):
            if names_it(int(order[i])) and (suits is None or suits[picked[order[i]]] == 1):
                return i
        return None

    def _calls(
        self,
        text: str,
        models: Sequence[int],
        neighbours: np.ndarray,
        sims: np.ndarray,
        relevance: np.ndarray,
        explicit: list[tuple[int, float | None]],
        wording: tuple[str | None, list[str]] = (None, []),
    ) -> list[APICall]:
        """The call for each model position in ``models``; ``wording`` is the prompt's orientation and
        named styles (:func:`orientation_of`, :func:`style_phrases`). The sampler, steps and CFG of all of
        them are agreed in one :func:`_consensus_many`."""
        orientation, styles = wording
        examples, checkpoints = self.index.examples, self.index.checkpoints
        owners, hashed, shared = examples.model[neighbours], examples.kind[neighbours] == 0, sims > 0
        plans = []
        for model in models:
            own = (owners == model) & shared
            strict = own & hashed
            if strict.any():  # settings from hash-resolved examples where there are any (page ones may be
                own = strict  # another version's images)
            mine, weights = neighbours[own], sims[own] ** _SIM_POWER
            ref = checkpoints.version(
                model,
                self.flt,
                [int(_weighted_mode(examples.version_id[mine], weights))] if len(mine) else (),
            )
            others = ~own & shared
            votes = self._votes(
                ref, model, mine, weights, neighbours[others], _OTHER_WEIGHT * sims[others] ** _SIM_POWER
            )
            plans.append((model, ref, own, mine, weights, votes))
        agreed = iter(_consensus_many([votes for *_, votes in plans if votes is not None]))
        calls = []
        for model, ref, own, mine, weights, votes in plans:
            params = self._params_for(
                ref, model, mine, weights, None if votes is None else next(agreed), orientation
            )
            near = [
                self.index.loras.by_version[v]
                for i, s in zip(mine, sims[own], strict=True)
                if s >= _NEAR_DUPLICATE
                for v, _ in examples.loras[i]
                if v in self.index.loras.by_version
            ][:3]
            loras = self.index.loras.pick(
                ref,
                model,
                relevance,
                explicit,
                near,
                self.flt.allow_nsfw_models,
                self.flt.allow_poi,
                styles=styles,
                versions=self.flt.version_ids,
                prompt=text,
            )
            calls.append(assemble_call(ref, text, params, loras, vae=self.vaes.get(ref.version_id)))
        return calls

    def _votes(
        self,
        ref: VersionRef,
        model: int,
        mine: np.ndarray,
        weights: np.ndarray,
        others: np.ndarray,
        other_weights: np.ndarray,
    ) -> _Votes | None:
        """What votes on the sampler, steps and CFG of model position ``model``: the nearest examples with
        this checkpoint, its usual settings and (much less) the nearest examples with other checkpoints;
        None where neither its examples nor the prompt's neighbours show it (its catalogue statistics
        then answer)."""
        examples = self.index.examples
        settings = self.index.settings.get(model)
        if settings is None and not len(mine):
            return None
        samplers = [examples.sampler[mine], examples.sampler[others]]
        steps = [examples.steps[mine], examples.steps[others]]
        cfgs = [examples.cfg[mine], examples.cfg[others]]
        weight = [weights, other_weights]
        own = [np.ones(len(mine), dtype=bool), np.zeros(len(others), dtype=bool)]
        if settings is not None:
            samplers.append(settings.sampler)
            steps.append(settings.steps)
            cfgs.append(settings.cfg)
            weight.append(_PRIOR_WEIGHT * settings.share)
            own.append(np.ones(len(settings.share), dtype=bool))
        bounds = recipe(ref.base_model, ref.full_name)
        all_steps = np.concatenate(steps)
        # fewer steps than the family's usual lowest (DPM++ SDE at 7) only where this checkpoint's own
        # users ran them: a prolific creator's 7-step habit must not reach other checkpoints
        seeds = np.concatenate(own) | (all_steps >= bounds.steps_range[0])
        return (
            np.concatenate(samplers),
            all_steps,
            np.concatenate(cfgs),
            np.concatenate(weight),
            bounds,
            seeds,
        )

    def _params_for(
        self,
        ref: VersionRef,
        model: int,
        mine: np.ndarray,
        weights: np.ndarray,
        agreed: tuple[int, float, float] | None,
        orientation: str | None = None,
    ) -> dict[str, Any]:
        """The agreed sampler, steps and CFG (:meth:`_votes`), else the checkpoint's catalogue statistics;
        size, clip skip and hires fix from the examples with this checkpoint, else from its statistics;
        the negative prompt its examples agree on; all then fitted to the family (:func:`fit_settings`)."""
        out = self._raw_params(ref, mine, weights, agreed)
        out["negative_prompt"], out["embeddings"] = self.embeddings.resolve(
            self.index.negative(model), ref.base_model
        )
        return fit_settings(ref, out, orientation, self.card(ref.model_id))

    def _raw_params(
        self, ref: VersionRef, mine: np.ndarray, weights: np.ndarray, agreed: tuple[int, float, float] | None
    ) -> dict[str, Any]:
        examples = self.index.examples
        if agreed is None:
            return dict(self.params.for_version(ref.version_id, ref.base_model))
        prior = self.params.for_version(ref.version_id, ref.base_model) if not len(mine) else None
        sampler, step, cfg = agreed
        out: dict[str, Any] = {
            "sampler": SAMPLERS[sampler],
            "steps": int(clamp(round(step), STEPS_RANGE)),
            "cfg_scale": float(clamp(cfg, CFG_RANGE)),
        }
        if len(mine):
            ok = examples.size_ok[mine]
            if ok.any():
                sizes = examples.width[mine][ok].astype(np.int64) * 100_000 + examples.height[mine][ok]
                width, height = divmod(int(_weighted_mode(sizes, weights[ok])), 100_000)
                out["hires"] = self._hires(mine[ok], weights[ok])
            else:
                prior = self.params.for_version(ref.version_id, ref.base_model)
                width, height = prior["width"], prior["height"]
            clip = _weighted_mode(examples.clip_skip[mine], weights)
            out.update(width=width, height=height, clip_skip=int(clip))
        else:
            prior = prior or self.params.for_version(ref.version_id, ref.base_model)
            out.update({name: prior[name] for name in ("width", "height", "clip_skip")})
        return out

    def _hires(self, rows: np.ndarray, weights: np.ndarray) -> Hires | None:
        """The hires fix of the heaviest example that used one, when most of the weight did."""
        used = self.index.examples.used_hires[rows]
        if not used.any() or weights[used].sum() < _HIRES_SHARE * weights.sum():
            return None
        return self.index.examples.hires[int(rows[np.flatnonzero(used)[np.argmax(weights[used])]])]


_NO_PAIRS = "the default agent learns from DABench pairs: build them with `diffagent bench build`"


def _forked(parent: weakref.ref[RetrievalAgent]) -> RetrievalAgent:
    agent = parent()
    if agent is None:
        raise RuntimeError("the agent this worker was forked for is gone")
    return agent


def _adopt(parent: weakref.ref[RetrievalAgent]) -> None:
    """A worker's start: its copy of the agent reads the catalogue through a connection of its own."""
    _forked(parent).store.reconnect_read_only()


def _answer_share(
    parent: weakref.ref[RetrievalAgent], share: tuple[list[str], list[str], int]
) -> list[Answer]:
    return _forked(parent)._answers(*share)


def _examples(examples: Sequence[Pair] | None) -> Sequence[Pair]:
    """The pairs as given (a :class:`~diffagent.bench.PairFiles` stays unread while its index is cached)."""
    if examples is None:
        raise UserInputError(_NO_PAIRS)
    return examples


def build_default_agent(
    store: Store,
    examples: Sequence[Pair] | None,
    *,
    base_models: Sequence[str] | None = None,
    allow_nsfw: bool = False,
    allow_poi: bool = False,
    versions: Collection[int] | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
    workers: int = 1,
) -> RetrievalAgent:
    """The default agent over ``store``, learning from ``examples`` only; its index and ranker are loaded
    from ``DIFFAGENT_HOME/default-agent`` or built there first (``progress(done, total)`` meanwhile).

    ``base_models`` restricts the checkpoints it may name (a Civitai string, ``SDXL 1.0``, or a family name
    for all of its strings, ``Pony``); explicit models (``allow_nsfw``) and real-person models
    (``allow_poi``) are out unless allowed (see :mod:`diffagent.catalog.safety`); ``versions`` (the user's
    installed files) restricts checkpoints and LoRAs to those versions. ``workers`` processes share a
    first build's ranker features and every large batch (0: one per core, at most
    :data:`~diffagent._fork.MAX_AUTO_WORKERS`); the index and the answers are the same.
    """
    pairs = _examples(examples)
    store.require_models()
    workers = worker_count(workers)
    index = _load_or_build(store, pairs, rebuild, progress, workers)
    flt = CatalogFilter(
        types=("Checkpoint",),
        base_models=base_models_named(store, tuple(base_models)) if base_models else None,
        allow_nsfw_models=allow_nsfw,
        version_ids=frozenset(versions) if versions is not None else None,
        allow_poi=allow_poi,
    )
    return RetrievalAgent(store, index, flt, workers)


def train_default(
    store: Store, examples: Sequence[Pair], progress: Progress | None = None, workers: int = 0
) -> tuple[Path, dict[str, float]]:
    """Rebuild the index and retrain the ranker for these examples (``workers`` processes, 0: one per
    core, share the ranker's features); returns the cache file and a report."""
    pairs = _examples(examples)
    index = _load_or_build(store, pairs, True, progress, worker_count(workers))
    return cache_dir() / f"{index.key}.npz", index.report
