"""DABench metrics of one answer against its ground truth, and their aggregation (DESIGN.md "Metrics").

Per answer: ``model@1`` / ``model@5`` (the true checkpoint's model id is first / among the first five of
the answer and its alternatives, counted once per model id), ``base@1`` (same base-model family, or the
same string where no family is known), ``hallucination`` (see :mod:`diffagent.catalog.validate`),
``invalid`` (any reason of ``validate_call``: hallucinations and plain errors such as a size off the grid),
``sampler`` (exact after name normalisation), ``steps`` (within 25% of the truth), ``cfg`` (within 1.5 of
the truth) and ``params`` (all three). Latencies aggregate as p50 / p95 with linear interpolation between
order statistics (numpy's default), so ten latencies 1..10 ms give p50 = 5.5 and p95 = 9.55.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..catalog import Store, architecture, check_call
from ..schema import Answer, APICall, normalize_sampler

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
    invalid: bool
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
    """Same base-model architecture (Pony counts as SDXL); where either is unknown, the same string."""
    a, b = architecture(predicted), architecture(truth)
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
    problems = check_call(store, api)
    return PairScore(
        model_at_1=models[0] == truth.checkpoint.model_id,
        model_at_5=truth.checkpoint.model_id in models[:5],
        base_at_1=base_match(api.checkpoint.base_model, truth.checkpoint.base_model),
        hallucination=any(p.hallucination for p in problems),
        invalid=bool(problems),
        sampler=sampler_match(api.sampler, truth.sampler),
        steps=steps_match(api.steps, truth.steps),
        cfg=cfg_match(api.cfg_scale, truth.cfg_scale),
        reward=reward,
    )


# metric name -> PairScore attribute, in the order tables show them
_SHARES = {
    "model@1": "model_at_1",
    "model@5": "model_at_5",
    "base@1": "base_at_1",
    "hallucination": "hallucination",
    "invalid": "invalid",
    "sampler": "sampler",
    "steps": "steps",
    "cfg": "cfg",
    "params": "params",
}


def mean_scores(scores: Sequence[PairScore]) -> dict[str, float | None]:
    """Shares of answers right per metric (``reward``: the mean), keyed by DESIGN.md's metric names.

    Empty input gives None for every metric, never a division by zero.
    """
    out: dict[str, float | None] = {}
    for key, attribute in _SHARES.items():
        values = [getattr(s, attribute) for s in scores]
        out[key] = sum(values) / len(values) if values else None
    rewards = [s.reward for s in scores if s.reward is not None]
    out["reward"] = sum(rewards) / len(rewards) if rewards else None
    return out


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; None for no values."""
    data = [v for v in values if not math.isnan(v)]
    return float(np.percentile(data, q)) if data else None
