"""DABench metrics of one answer against its ground truth, and their aggregation (DESIGN.md "Metrics").

Per answer: ``model@1`` / ``model@5`` (the true checkpoint's model id is first / among the first five of
the answer and its alternatives, counted once per model id), ``base@1`` (same base-model family, or the
same string where no family is known), ``hallucination`` (see :mod:`diffagent.catalog.validate`),
``sampler`` (exact after name normalisation), ``steps`` (within 25% of the truth), ``cfg`` (within 1.5 of
the truth) and ``params`` (all three). Latencies aggregate as p50 / p95 with linear interpolation between
order statistics (numpy's default), so ten latencies 1..10 ms give p50 = 5.5 and p95 = 9.55.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..catalog import Store, family, hallucination_reasons
from ..schema import APICall, Answer, normalize_sampler

__all__ = [
    "CFG_TOLERANCE",
    "STEPS_TOLERANCE",
    "PairScore",
    "base_match",
    "candidate_models",
    "cfg_match",
    "mean_scores",
    "percentile",
    "sampler_match",
    "score_answer",
    "steps_match",
]

STEPS_TOLERANCE = 0.25
"""Steps count as right within this share of the true step count."""
CFG_TOLERANCE = 1.5
"""CFG counts as right within this absolute distance of the true CFG scale."""
_EPS = 1e-9  # a value exactly on a tolerance edge is inside it, whatever the float rounding


@dataclass(frozen=True)
class PairScore:
    """The per-answer metrics, each 0 or 1 (``reward`` a real number, None where not scored)."""

    model_at_1: bool
    model_at_5: bool
    base_at_1: bool
    hallucination: bool
    sampler: bool
    steps: bool
    cfg: bool
    reward: float | None = None

    @property
    def params(self) -> bool:
        return self.sampler and self.steps and self.cfg


def candidate_models(answer: Answer) -> list[int]:
    """Model ids of the answer then its alternatives, each once, in rank order."""
    seen: list[int] = []
    for call in (answer.api, *answer.alternatives):
        if call.checkpoint.model_id not in seen:
            seen.append(call.checkpoint.model_id)
    return seen


def base_match(predicted: str | None, truth: str | None) -> bool:
    """Same base-model family; where either family is unknown, the same (stripped, case-folded) string."""
    a, b = family(predicted), family(truth)
    if a is not None and b is not None:
        return a == b
    return (predicted or "").strip().casefold() == (truth or "").strip().casefold()


def sampler_match(predicted: str, truth: str) -> bool:
    canonical = normalize_sampler(predicted)
    return canonical is not None and canonical == normalize_sampler(truth)


def steps_match(predicted: int, truth: int) -> bool:
    return abs(predicted - truth) <= STEPS_TOLERANCE * truth + _EPS


def cfg_match(predicted: float, truth: float) -> bool:
    return abs(predicted - truth) <= CFG_TOLERANCE + _EPS


def score_answer(store: Store, answer: Answer, truth: APICall, reward: float | None = None) -> PairScore:
    """All per-answer metrics of ``answer`` for a pair whose ground truth is ``truth``."""
    api = answer.api
    models = candidate_models(answer)
    return PairScore(
        model_at_1=models[0] == truth.checkpoint.model_id,
        model_at_5=truth.checkpoint.model_id in models[:5],
        base_at_1=base_match(api.checkpoint.base_model, truth.checkpoint.base_model),
        hallucination=bool(hallucination_reasons(store, api)),
        sampler=sampler_match(api.sampler, truth.sampler),
        steps=steps_match(api.steps, truth.steps),
        cfg=cfg_match(api.cfg_scale, truth.cfg_scale),
        reward=reward,
    )


def mean_scores(scores: Sequence[PairScore]) -> dict[str, float | None]:
    """Shares of answers right per metric (``reward``: the mean), keyed by DESIGN.md's metric names.

    Empty input gives None for every metric, never a division by zero.
    """
    names = {"model_at_1": "model@1", "model_at_5": "model@5", "base_at_1": "base@1"}
    out: dict[str, float | None] = {}
    for key in ("model_at_1", "model_at_5", "base_at_1", "hallucination", "sampler", "steps", "cfg"):
        values = [asdict(s)[key] for s in scores]
        out[names.get(key, key)] = sum(values) / len(values) if values else None
    out["params"] = sum(s.params for s in scores) / len(scores) if scores else None
    rewards = [s.reward for s in scores if s.reward is not None]
    out["reward"] = sum(rewards) / len(rewards) if rewards else None
    return out


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; None for no values."""
    data = [v for v in values if not math.isnan(v)]
    return float(np.percentile(data, q)) if data else None
