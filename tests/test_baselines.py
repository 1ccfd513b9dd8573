"""Baseline agents and checkpoint parameter priors on a small store (``dump_records``: the shared dump's
first 600 models, or the fixture catalogue)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from diffagent.agents import load_agent
from diffagent.agents.default.params import ParamStats
from diffagent.bench import Pair, load_pairs
from diffagent.bench.evaluate import evaluate
from diffagent.catalog import Store, validate_call
from diffagent.errors import UserInputError

BASELINES = ("random", "popular", "keyword", "tfidf")


@pytest.fixture(scope="module")
def train(small_bench: tuple[Store, Path]) -> list[Pair]:
    return load_pairs(small_bench[1] / "train.jsonl")


@pytest.fixture(scope="module")
def test_pairs(small_bench: tuple[Store, Path]) -> list[Pair]:
    return load_pairs(small_bench[1] / "test.jsonl")


@pytest.mark.parametrize("name", BASELINES)
def test_answers_are_valid_catalogue_checkpoints(name: str, small_bench, train, test_pairs) -> None:
    store = small_bench[0]
    agent = load_agent(name, store, train)
    for answer in agent.select_batch([p.instruction for p in test_pairs[:15]], k=5):
        assert len(answer.alternatives) == 5
        assert answer.alternatives[0].model_dump(exclude={"score"}) == answer.api.model_dump()
        model_ids = [alt.checkpoint.model_id for alt in answer.alternatives]
        assert len(set(model_ids)) == 5
        for call in answer.alternatives:
            assert validate_call(store, call) == []
            assert store.version(call.checkpoint.version_id).model_type == "Checkpoint"
            if name != "tfidf":
                assert call.loras == []


def test_baselines_rank_as_expected_on_the_fixed_test_split(small_bench, train, test_pairs) -> None:
    rows = {
        name: evaluate(
            load_agent(name, small_bench[0], train),
            test_pairs,
            small_bench[0],
            latency_prompts=3,
        )
        for name in BASELINES
    }
    for row in rows.values():
        assert row["hallucination"] == 0 and row["invalid"] == 0 and row["n"] == len(test_pairs)
    assert rows["random"]["model@5"] < rows["popular"]["model@5"] < rows["tfidf"]["model@5"]
    assert rows["keyword"]["model@1"] > rows["random"]["model@1"]
    assert rows["tfidf"]["model@1"] >= 0.5 and rows["tfidf"]["params"] >= 0.3


def test_random_is_seeded_per_prompt(small_bench, train) -> None:
    first = load_agent("random", small_bench[0], train, seed=1)
    again = load_agent("random", small_bench[0], train, seed=1)
    other = load_agent("random", small_bench[0], train, seed=2)
    prompts = [f"prompt {i}" for i in range(5)]
    ids = [a.api.checkpoint.version_id for a in first.select_batch(prompts)]
    assert ids == [a.api.checkpoint.version_id for a in again.select_batch(list(reversed(prompts)))][::-1]
    assert ids != [a.api.checkpoint.version_id for a in other.select_batch(prompts)]


def test_popular_answers_the_most_downloaded_checkpoint(small_bench, train) -> None:
    store = small_bench[0]
    answer = load_agent("popular", store, train).select("anything at all")
    top = store.conn.execute(
        "SELECT id FROM models WHERE type = 'Checkpoint' AND nsfw = 0 ORDER BY download_count DESC LIMIT 1"
    ).fetchone()[0]
    assert answer.api.checkpoint.model_id == top
    assert [a.score for a in answer.alternatives] == sorted(
        (a.score for a in answer.alternatives), reverse=True
    )


def test_tfidf_finds_training_prompts_and_copies_their_loras(small_bench, train) -> None:
    # every model allowed: this is about retrieval (the safe default cannot name some pairs' checkpoints)
    agent = load_agent("tfidf", small_bench[0], train, allow_nsfw=True, allow_poi=True)
    answers = agent.select_batch([p.instruction for p in train])
    hits = sum(
        a.api.checkpoint.model_id == p.api.checkpoint.model_id for a, p in zip(answers, train, strict=True)
    )
    assert hits / len(train) >= 0.9
    with_loras = [
        (a, p)
        for a, p in zip(answers, train, strict=True)
        if p.api.loras and a.api.checkpoint == p.api.checkpoint
    ]
    assert with_loras, "the fixed data has a training pair with a LoRA"
    for answer, pair in with_loras:
        assert [lora.version_id for lora in answer.api.loras] == [lora.version_id for lora in pair.api.loras]
        assert all(word in answer.api.prompt for lora in answer.api.loras for word in lora.trigger_words)
        assert answer.evidence[0].similarity == pytest.approx(1.0, abs=1e-3)


def test_tfidf_needs_examples(small_bench) -> None:
    with pytest.raises(UserInputError, match="bench build"):
        load_agent("tfidf", small_bench[0], [])


def test_param_stats_levels_and_image_selection(small_bench, train) -> None:
    store = small_bench[0]
    stats = ParamStats(store)
    version_id, count = store.conn.execute(
        "SELECT version_id, COUNT(*) FROM images i WHERE model_hash IS NULL AND steps IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM models m WHERE m.id = i.model_id AND m.type = 'Checkpoint')"
        " GROUP BY version_id ORDER BY 2 DESC LIMIT 1"
    ).fetchone()
    typical = stats.for_version(version_id)
    assert typical["source"] == "version" and stats.support(version_id) >= count
    assert set(typical) >= {
        "sampler",
        "steps",
        "cfg_scale",
        "width",
        "height",
        "clip_skip",
        "negative_prompt",
    }
    # Learning from no image at all leaves the family defaults: nothing leaks from unseen images.
    blind = ParamStats(store, image_ids=set()).for_version(version_id)
    assert blind["source"] == "default" and blind["support"] == 0
    unknown = stats.for_version(10**9, "SDXL 1.0")
    assert (unknown["width"], unknown["height"]) == (832, 1216)
    turbo = stats.for_version(10**9, "SDXL Turbo")
    assert turbo["steps"] <= 8 and turbo["cfg_scale"] <= 2.5
    only_train = ParamStats.shared(store, {p.source.image_id for p in train})
    assert only_train is ParamStats.shared(store, {p.source.image_id for p in train})


def test_param_stats_fall_back_on_the_creators_other_checkpoints(small_bench) -> None:
    """A checkpoint without images of its own takes its creator's usual settings in the same family."""
    store = small_bench[0]
    rows = store.conn.execute(
        """SELECT m.creator, v.base_model, m.id, v.id, COUNT(i.id) FROM models m
           JOIN versions v ON v.model_id = m.id
           LEFT JOIN images i ON i.version_id = v.id AND i.model_hash IS NULL AND i.steps IS NOT NULL
           WHERE m.type = 'Checkpoint' AND m.creator IS NOT NULL AND v.base_model IS NOT NULL
           GROUP BY v.id ORDER BY m.creator, v.base_model"""
    ).fetchall()
    pairs = [
        (a, b)
        for a, b in itertools.pairwise(rows)
        if a[:2] == b[:2] and a[2] != b[2] and a[4] >= 3  # same creator and base, another model
    ]
    assert pairs, "the first dump records should hold a creator with two checkpoints of one base model"
    seen, unseen = pairs[0]
    # images without a model hash count for the checkpoint page they hang on: the seen model's version
    images = store.conn.execute(
        "SELECT id FROM images WHERE version_id = ? AND model_hash IS NULL", (seen[3],)
    ).fetchall()
    stats = ParamStats(store, image_ids=[r[0] for r in images])  # nothing of the other model is learnt
    own = stats.for_version(seen[3])
    borrowed = stats.for_version(unseen[3])
    assert own["source"] == "version" and borrowed["source"] == "creator" and borrowed["support"] == 0
    assert [borrowed[k] for k in ("sampler", "steps", "cfg_scale")] == [
        own[k] for k in ("sampler", "steps", "cfg_scale")
    ]
