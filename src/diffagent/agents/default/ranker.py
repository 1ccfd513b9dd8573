"""Candidate checkpoints for a batch of prompts, their features, and the LambdaRank model that orders them.

Signals, each a (prompts x checkpoint models) matrix computed for a whole batch with a few sparse products:
similarity-weighted votes of the nearest example prompts at several depths (and the share of the vote), the
best neighbour's similarity and rank, similarity to each model's centroid, the card (name, tags, trigger
words, description) and name matches, the checkpoints the prompt's LoRAs were used with, the pages the
neighbours hang on, the nearest examples by prompt shape (how it is written, see
:func:`~diffagent.agents.default.index.prompt_shape`) and each model's shape centroid, and popularity and
recency. Candidates are the best models by neighbour vote and centroid plus the best card matches; a
gradient-boosted LambdaRank model (LightGBM) orders them.

Training features come from the agent's own examples, each fold scored against the other folds only
(neighbours, centroids, co-usage and counts alike), so that they look like the features of a new prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ...catalog.styles import STYLES, SUITS_SHARE, style_hits
from .index import FOLDS, Checkpoints, Examples, PromptIndex, similarities
from .loras import LoraIndex

__all__ = [
    "FEATURES",
    "Signals",
    "candidates",
    "feature_matrix",
    "general_models",
    "signals",
    "style_columns",
]

Progress = Callable[[int, int], None]

DEPTHS = (5, 20, 100)
"""Neighbour depths of the votes; the deepest is how many neighbours are kept."""
N_CANDIDATES = 40
N_CARD_CANDIDATES = 10
"""Of the candidates, how many come from card and name matches (models the examples rarely show)."""
N_STYLE_CANDIDATES = 3
"""Of the candidates, how many are the most downloaded models of the prompt's style."""
N_GENERAL_MODELS = 3
"""How many well-made general models a low-confidence answer chooses among (:func:`general_models`)."""
_SHARE_POWER = 2.0
_PAGE_DEPTH = 20
SHAPE_DEPTH = 20
"""How many of the nearest examples by prompt shape vote."""

FEATURES = (
    *(f"vote{k}" for k in DEPTHS),
    *(f"share{k}" for k in DEPTHS),
    "best_sim",
    "best_rank",
    "top_sim",
    "centroid",
    "centroid_rank",
    "card",
    "name",
    "lora",
    "lora_hits",
    "page",
    "shape_vote",
    "shape_best",
    "shape_centroid",
    "log_count",
    "log_downloads",
    "rating",
    "recency",
    "family",
    "few_step",
    "words",
    "query_terms",
    "style",
    "style_suits",
    "style_clear",
)


@dataclass
class Signals:
    """What the ranker and the answer need about a batch of prompts."""

    neighbours: np.ndarray
    """(B, K) example indices, closest first."""
    sims: np.ndarray
    """(B, K) their cosine similarities (0 where no word is shared)."""
    dense: dict[str, np.ndarray]
    """Per-model signals, each (B, models)."""
    words: np.ndarray
    lora_relevance: sparse.csr_matrix
    query_terms: np.ndarray
    """(B,) how many of the prompt's terms the example vocabulary knows."""
    intent: np.ndarray
    """(B,) index into STYLES of the prompt's one clear style, -1 when it has none."""


def _top(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(sims, part, 1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, 1), np.take_along_axis(values, order, 1)


def _rank_among(scores: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """(B, n) rank (0 = best) of each picked model's score among all models' scores of its row."""
    descending = -np.sort(-scores, axis=1)
    values = np.take_along_axis(scores, picked, 1)
    return np.stack(
        [np.searchsorted(-row, -v, side="left") for row, v in zip(descending, values, strict=True)]
    ).astype(np.float32)


def signals(
    texts: Sequence[str],
    prompts: PromptIndex,
    examples: Examples,
    checkpoints: Checkpoints,
    loras: LoraIndex,
    counts: np.ndarray,
    folds: np.ndarray | None = None,
) -> Signals:
    """Per-model signals for ``texts``; with ``folds``, each prompt sees only the other folds' examples
    (training features: the fold tables exist while the index is built, not in the cache)."""
    if folds is not None and not prompts.fold_centroids:
        raise ValueError("fold signals need the index as built; a cached index keeps no fold tables")
    n_models = len(checkpoints)
    batch = len(texts)
    # training: a prompt's own fold is out of its neighbours
    same_fold = None if folds is None else examples.fold[None, :] == folds[:, None]
    query = prompts.transform(texts)
    neighbours, near = _nearest(similarities(query, prompts.by_term), same_fold, max(DEPTHS))
    depth = neighbours.shape[1]
    owner = examples.model[neighbours]
    rows = np.repeat(np.arange(batch), depth).reshape(batch, depth)
    dense: dict[str, np.ndarray] = {}
    for k in DEPTHS:
        votes = _per_model(owner[:, :k], near[:, :k], n_models, np.add)
        dense[f"vote{k}"] = votes
        dense[f"share{k}"] = votes / (near[:, :k].sum(axis=1, keepdims=True) + 1e-9)
    dense["best_sim"] = _per_model(owner, near, n_models, np.maximum)
    first = np.full((batch, n_models), 2.0 * depth, dtype=np.float32)
    np.minimum.at(first, (rows.ravel(), owner.ravel()), np.tile(np.arange(depth, dtype=np.float32), batch))
    dense["best_rank"] = first
    dense["centroid"] = _centroid_similarity(query, prompts.centroids, prompts.fold_centroids, folds)
    dense["card"] = (checkpoints.card_vectorizer.transform(texts) @ checkpoints.cards).toarray()
    dense["name"] = (checkpoints.name_vectorizer.transform(texts) @ checkpoints.names).toarray()
    relevance = loras.relevance(texts)
    dense["lora"] = loras.checkpoint_votes(relevance, folds)
    page_model = np.array(
        [checkpoints.position.get(int(p), -1) for p in examples.page[neighbours[:, :_PAGE_DEPTH].ravel()]]
    )
    page = np.zeros((batch, n_models), dtype=np.float32)
    on_page = page_model >= 0
    np.add.at(
        page,
        (rows[:, :_PAGE_DEPTH].ravel()[on_page], page_model[on_page]),
        near[:, :_PAGE_DEPTH].ravel()[on_page],
    )
    dense["page"] = page
    shape = prompts.shape_vectors(texts)
    dense["shape_centroid"] = _centroid_similarity(
        shape, prompts.shape_centroids, prompts.fold_shape_centroids, folds
    )
    shape_near, shape_sim = _nearest(similarities(shape, prompts.shape_by_term), same_fold, SHAPE_DEPTH)
    shape_owner = examples.model[shape_near]
    dense["shape_vote"] = _per_model(shape_owner, shape_sim, n_models, np.add)
    dense["shape_best"] = _per_model(shape_owner, shape_sim, n_models, np.maximum)
    count = counts[folds] if folds is not None else np.broadcast_to(counts[FOLDS], (batch, n_models))
    dense["log_count"] = np.log1p(count)
    words = np.array([len(t.split()) for t in texts], dtype=np.float32)
    hits = np.stack([style_hits(t) for t in texts]) if batch else np.zeros((0, len(STYLES)), np.float32)
    intent = np.where(hits.sum(axis=1) == 1, hits.argmax(axis=1), -1)
    if folds is None or checkpoints.fold_styles is None:
        profiles = checkpoints.styles if checkpoints.styles is not None else checkpoints.claimed_styles
        dense["style"] = hits @ profiles.T
        dense["style_suits"] = suits_matrix(profiles, intent)
    else:
        dense["style"] = np.zeros((batch, n_models), dtype=np.float32)
        dense["style_suits"] = np.zeros((batch, n_models), dtype=np.float32)
        for f in range(FOLDS):
            mine = np.flatnonzero(folds == f)
            if len(mine):
                dense["style"][mine] = hits[mine] @ checkpoints.fold_styles[f].T
                dense["style_suits"][mine] = suits_matrix(checkpoints.fold_styles[f], intent[mine])
    query_terms = np.diff(query.indptr).astype(np.float32)
    return Signals(neighbours, near, dense, words, relevance, query_terms, intent)


def _nearest(sims: np.ndarray, same_fold: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar examples of each row and their similarities, leaving out ``same_fold``."""
    if same_fold is not None:
        sims[same_fold] = 0.0
    return _top(sims, k)


def _per_model(owner: np.ndarray, values: np.ndarray, n_models: int, reduce: np.ufunc) -> np.ndarray:
    """(B, models): ``values`` (B, k) of examples made with model ``owner`` (B, k), summed or maxed."""
    out = np.zeros((len(owner), n_models), dtype=np.float32)
    reduce.at(out, (np.repeat(np.arange(len(owner)), owner.shape[1]), owner.ravel()), values.ravel())
    return out


def _centroid_similarity(
    query: sparse.csr_matrix,
    centroids: sparse.csr_matrix,
    fold_centroids: list[sparse.csr_matrix],
    folds: np.ndarray | None,
) -> np.ndarray:
    """(B, models) similarity of each query vector to each model's centroid; with ``folds``, to the
    centroid without the query's own fold."""
    if folds is None:
        return (query @ centroids).toarray()
    out = np.zeros((query.shape[0], centroids.shape[1]), dtype=np.float32)
    for f in range(FOLDS):
        mine = np.flatnonzero(folds == f)
        if len(mine):
            out[mine] = (query[mine] @ fold_centroids[f]).toarray()
    return out


def suits_matrix(profiles: np.ndarray, intent: np.ndarray) -> np.ndarray:
    """(B, models) 1 where the model suits the prompt's clear style (:func:`~diffagent.catalog.styles.suits`,
    vectorised), 0 where it does not, 0.5 where nothing is known: a prompt without a clear style, or a
    model whose tags and examples say no style (never demoted for that)."""
    out = np.full((len(intent), len(profiles)), 0.5, dtype=np.float32)
    clear = intent >= 0
    if clear.any():
        value = profiles[:, intent[clear]].T  # (clear B, models)
        top = profiles.max(axis=1)[None, :]
        fits = ((value > 0) & ((value >= SUITS_SHARE) | (value >= top))).astype(np.float32)
        out[clear] = np.where(top > 0, fits, 0.5)
    return out


def fold_counts(examples: Examples, n_models: int) -> np.ndarray:
    """(FOLDS + 1, models): examples per model without each fold, and (last row) with all."""
    total = np.bincount(examples.model, minlength=n_models).astype(np.float32)
    out = np.empty((FOLDS + 1, n_models), dtype=np.float32)
    for f in range(FOLDS):
        out[f] = total - np.bincount(examples.model[examples.fold == f], minlength=n_models)
    out[FOLDS] = total
    return out


def style_columns(allowed: int, n: int = N_CANDIDATES, n_style: int = N_STYLE_CANDIDATES) -> int:
    """How many of the last candidate columns are the style candidates, for ``allowed`` nameable models."""
    return min(n_style, max(min(n, allowed) - 1, 0))


def candidates(
    sig: Signals,
    allowed: np.ndarray,
    checkpoints: Checkpoints,
    n: int = N_CANDIDATES,
    n_card: int = N_CARD_CANDIDATES,
    n_style: int = N_STYLE_CANDIDATES,
) -> np.ndarray:
    """(B, n) model positions: the strongest by neighbour vote and centroid, then by card and name, then
    the popular models most of the prompt's clear style (the most downloaded of all without one), so
    that a well-made model of the asked style is always among the candidates."""
    dense = sig.dense
    n = min(n, int(allowed.sum()))
    n_style = style_columns(int(allowed.sum()), n, n_style)
    n_card = min(n_card, n - n_style)
    n -= n_style
    floor = np.where(allowed, 0.0, -np.inf).astype(np.float32)
    style = np.zeros((len(sig.intent), 0), dtype=np.int64)
    if n_style:
        clear = (sig.intent >= 0)[:, None]
        wanted = (dense["style_suits"] == 1) | ~clear
        # of a clear style, the models it is most the style of, weighed by popularity (a general mix
        # that also does some 3D loses to a well-liked 3D model); chosen first, so that they are
        # these whatever the other candidates are (the agent's fallback reads them)
        weight = np.where(clear, dense["style"], 1.0)
        popular = np.where(wanted, weight * checkpoints.log_downloads[None, :], -1.0)
        style = _top((popular + floor).astype(np.float32), n_style)[0]
    prior = (
        dense["vote100"] + 0.5 * dense["centroid"] + 1e-3 * dense["log_count"] + 1e-4 * dense["lora"] + floor
    )
    np.put_along_axis(prior, style, -np.inf, axis=1)
    picked = _top(prior, n - n_card)[0] if n > n_card else np.zeros((len(prior), 0), dtype=np.int64)
    if n_card:
        cards = dense["card"] + dense["name"] + floor
        np.put_along_axis(cards, np.hstack([picked, style]), -np.inf, axis=1)
        picked = np.hstack([picked, _top(cards, n_card)[0]])
    return np.hstack([picked, style])


def general_models(
    sig: Signals, allowed: np.ndarray, checkpoints: Checkpoints, n: int = N_GENERAL_MODELS
) -> np.ndarray:
    """(B, n) the well-made general models of each prompt's clear style (of all, without one) that a
    low-confidence answer chooses among: models that make the style, by downloads times the square of
    the style's share of their profile, so that a well-liked model that mostly makes it comes before
    both a mix that does a little of it and a niche model whose handful of examples all show it (the
    candidates' style columns keep those niche models: they are often the uploader's pick)."""
    dense = sig.dense
    clear = (sig.intent >= 0)[:, None]
    wanted = ((dense["style_suits"] == 1) | ~clear) & allowed[None, :]
    share = np.where(clear, dense["style"], 1.0)
    score = checkpoints.log_downloads[None, :] + _SHARE_POWER * np.log(np.maximum(share, 1e-6))
    return _top(np.where(wanted, score, -np.inf).astype(np.float32), min(n, int(allowed.sum())))[0]


def feature_matrix(sig: Signals, picked: np.ndarray, checkpoints: Checkpoints) -> np.ndarray:
    """(B * n, len(FEATURES)) features of the picked candidates, row-major by prompt."""
    batch, n = picked.shape
    rows = np.repeat(np.arange(batch), n)
    cols = picked.ravel()
    dense = sig.dense
    columns = {name: dense[name][rows, cols] for name in dense}
    columns["top_sim"] = np.repeat(sig.sims[:, 0], n)
    columns["centroid_rank"] = _rank_among(dense["centroid"], picked).ravel()
    columns["lora_hits"] = np.repeat(np.asarray(sig.lora_relevance.sum(axis=1)).ravel(), n)
    columns["log_downloads"] = checkpoints.log_downloads[cols]
    columns["rating"] = checkpoints.rating[cols]
    columns["recency"] = checkpoints.recency[cols]
    columns["family"] = checkpoints.family_code[cols]
    columns["few_step"] = checkpoints.few_step[cols].astype(np.float32)
    columns["words"] = np.repeat(sig.words, n)
    columns["query_terms"] = np.repeat(sig.query_terms, n)
    columns["style_clear"] = np.repeat((sig.intent >= 0).astype(np.float32), n)
    return np.column_stack([columns[name] for name in FEATURES]).astype(np.float32)
