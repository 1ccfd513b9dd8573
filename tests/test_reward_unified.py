"""The unified metric's formula on hand-made numbers, its versioned statistics, and the image-based reward."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from diffagent.errors import UserInputError
from diffagent.reward import (
    UNIFIED_SCORERS,
    UNIFIED_VERSION,
    GeneratedImageReward,
    ImageScorer,
    ReferenceStats,
    Reward,
    ScorerStats,
    UnifiedMetric,
    compute_reference_stats,
    unified_score,
)
from diffagent.schema import APICall, Checkpoint


class TableScorer(ImageScorer):
    """A scorer whose score of pair i is a fixed number: the formula is checked on known values.

    Images are integers here, standing for the index of the pair.
    """

    def __init__(self, name: str, values: list[float]) -> None:
        self.name = name
        self.values = values

    def score(self, prompts, images):
        self.check_lengths(prompts, images)
        return [self.values[i] for i in images]


class BrightnessScorer(ImageScorer):
    name = "clip"

    def score(self, prompts, images):
        return [
            float(np.asarray(image).mean()) + len(prompt)
            for prompt, image in zip(prompts, images, strict=True)
        ]


STATS = ReferenceStats(
    version="unified-test",
    scorers=("clip", "imagereward", "hpsv2"),
    stats={
        "clip": ScorerStats(mean=30.0, std=5.0, n=100),
        "imagereward": ScorerStats(mean=0.0, std=1.0, n=100),
        "hpsv2": ScorerStats(mean=0.27, std=0.01, n=100),
    },
    reference="hand-made",
)


def test_formula_on_hand_made_numbers() -> None:
    raw = {"clip": [35.0, 25.0, 30.0], "imagereward": [1.0, -0.5, 0.0], "hpsv2": [0.28, 0.27, 0.25]}
    # z-scores: clip (1, -1, 0), imagereward (1, -0.5, 0), hpsv2 (1, 0, -2); means of the three
    assert unified_score(raw, STATS) == pytest.approx([1.0, -0.5, -2 / 3])


def test_formula_needs_exactly_the_versioned_scorers() -> None:
    with pytest.raises(UserInputError, match="needs scores of"):
        unified_score({"clip": [1.0], "imagereward": [1.0]}, STATS)
    with pytest.raises(UserInputError, match="same pairs"):
        unified_score({"clip": [1.0], "imagereward": [1.0, 2.0], "hpsv2": [0.3]}, STATS)


def test_reference_stats_are_mean_and_sample_std() -> None:
    values = {
        "clip": [20.0, 30.0, 40.0, 35.0],
        "imagereward": [0.5, -1.0, 2.0, 0.0],
        "hpsv2": [0.2, 0.3, 0.25, 0.3],
    }
    scorers = [TableScorer(name, values[name]) for name in UNIFIED_SCORERS]
    seen = []
    stats = compute_reference_stats(
        scorers, ["p"] * 4, [0, 1, 2, 3], version="v-test", reference="four pairs", chunk=3,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert seen == [(3, 4), (4, 4)]
    for name in UNIFIED_SCORERS:
        assert stats.stats[name].mean == pytest.approx(statistics.mean(values[name]))
        assert stats.stats[name].std == pytest.approx(statistics.stdev(values[name]))
        assert stats.stats[name].n == 4
    # Standardised by its own statistics, the reference set averages 0.
    metric = UnifiedMetric(scorers, stats)
    assert metric.name == "v-test"
    assert statistics.mean(metric.score(["p"] * 4, [0, 1, 2, 3])) == pytest.approx(0.0, abs=1e-12)
    parts = metric.components(["p"] * 2, [0, 1])
    assert parts == {name: values[name][:2] for name in UNIFIED_SCORERS}
    assert metric.score(["p"] * 2, [0, 1]) == unified_score(parts, stats)


def test_constant_scorer_cannot_be_standardised() -> None:
    scorers = [TableScorer(name, [1.0, 1.0]) for name in UNIFIED_SCORERS]
    with pytest.raises(UserInputError, match="same score"):
        compute_reference_stats(scorers, ["p", "q"], [0, 1], version="v", reference="r")


def test_stats_round_trip_and_packaged_file(tmp_path) -> None:
    STATS.save(tmp_path / "stats.json")
    assert ReferenceStats.load(tmp_path / "stats.json") == STATS
    packaged = ReferenceStats.load()
    assert packaged.version == UNIFIED_VERSION
    assert packaged.scorers == UNIFIED_SCORERS
    assert "sigma_k" in packaged.formula
    scorers = [TableScorer(name, [1.0]) for name in UNIFIED_SCORERS]
    # No weights here, so no measured statistics: the metric refuses rather than guessing.
    with pytest.raises(UserInputError, match="diffagent reward stats"):
        UnifiedMetric(scorers)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserInputError, match="not a reference statistics file"):
        ReferenceStats.load(tmp_path / "bad.json")


def test_pickscore_is_held_out_and_scorer_sets_must_match() -> None:
    scorers = [TableScorer(name, [1.0, 2.0]) for name in (*UNIFIED_SCORERS, "pickscore")]
    with pytest.raises(UserInputError, match="held out"):
        UnifiedMetric(scorers, STATS)
    with pytest.raises(UserInputError, match="held out"):
        compute_reference_stats(scorers, ["p", "q"], [0, 1], version="v", reference="r")
    with pytest.raises(UserInputError, match="combines"):
        UnifiedMetric(scorers[:2], STATS)


def _call(steps: int) -> APICall:
    checkpoint = Checkpoint(model_id=1, version_id=2, name="Model", base_model="SD 1.5")
    return APICall(checkpoint=checkpoint, prompt="a cat", sampler="Euler a", steps=steps, cfg_scale=7.0,
                   width=64, height=64)  # fmt: skip


def test_generated_image_reward_scores_each_rendered_call_against_the_instruction() -> None:
    rendered = []

    def generate(call: APICall) -> np.ndarray:
        rendered.append(call.steps)
        return np.full((8, 8, 3), call.steps, dtype=np.uint8)

    reward = GeneratedImageReward(generate, BrightnessScorer())
    assert isinstance(reward, Reward)
    assert reward.name == "image:clip"
    scores = reward.score_calls("four", [_call(10), _call(30)], reference=None)
    assert rendered == [10, 30]
    assert scores == [
        10.0 + 4,
        30.0 + 4,
    ]  # brightness plus the length of the instruction, not the call's prompt
    assert reward.score_calls("four", []) == []
