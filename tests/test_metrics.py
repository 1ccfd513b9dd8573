"""DABench metrics and the catalogue validator on hand-made cases: each edge of each definition."""

from __future__ import annotations

import json

import pytest

from diffagent.bench import Pair, PairSource
from diffagent.bench.evaluate import evaluate, render_markdown, spread
from diffagent.bench.metrics import (
    base_match,
    candidate_models,
    cfg_match,
    mean_scores,
    percentile,
    sampler_match,
    score_answer,
    steps_match,
)
from diffagent.catalog import Store, hallucination_reasons, is_hallucination, validate_call
from diffagent.protocols import Agent
from diffagent.schema import Alternative, Answer, APICall, Checkpoint, LoRA


def _model(model_id: int, kind: str, base: str, name: str) -> dict:
    return {
        "id": model_id,
        "name": name,
        "type": kind,
        "nsfw": False,
        "modelVersions": [{"id": model_id * 10, "name": "v1", "baseModel": base, "trainedWords": ["trig"]}],
    }


@pytest.fixture(scope="module")
def store() -> Store:
    store = Store()
    for record in (
        _model(1, "Checkpoint", "SD 1.5", "Real Mix"),
        _model(2, "Checkpoint", "SD 2.1 768", "Wide Mix"),
        _model(3, "LORA", "SD 1.5", "Style One"),
        _model(4, "LORA", "SDXL 1.0", "XL Style"),
    ):
        store.upsert_model(record)
    return store


CKPT_15 = Checkpoint(model_id=1, version_id=10, name="Real Mix", base_model="SD 1.5")
CKPT_21 = Checkpoint(model_id=2, version_id=20, name="Wide Mix", base_model="SD 2.1 768")
LORA_15 = LoRA(model_id=3, version_id=30, name="Style One", weight=0.8, trigger_words=["trig"])
LORA_XL = LoRA(model_id=4, version_id=40, name="XL Style", weight=0.8)


def _call(**changes: object) -> APICall:
    fields = {
        "checkpoint": CKPT_15,
        "prompt": "a castle, trig",
        "sampler": "DPM++ 2M Karras",
        "steps": 20,
        "cfg_scale": 7.0,
        "width": 512,
        "height": 768,
        "clip_skip": 2,
    }
    return APICall(**{**fields, **changes})


TRUTH = _call(loras=[LORA_15])


def test_a_valid_call_has_no_reason(store: Store) -> None:
    assert validate_call(store, TRUTH) == []
    assert not is_hallucination(store, TRUTH)


def test_a_hallucinated_checkpoint_name(store: Store) -> None:
    made_up = Checkpoint(model_id=777, version_id=7770, name="Ultra Photoreal XL", base_model="SD 1.5")
    api = _call(checkpoint=made_up)
    assert hallucination_reasons(store, api) == ["checkpoint version 7770 is not in the catalogue"]
    score = score_answer(store, Answer(api=api), TRUTH)
    assert score.hallucination and score.invalid and not score.model_at_1


def test_mismatched_ids_and_wrong_types_are_hallucinations(store: Store) -> None:
    other_model = CKPT_15.model_copy(update={"model_id": 2})
    assert any(
        "belongs to model 1, not 2" in r for r in hallucination_reasons(store, _call(checkpoint=other_model))
    )
    lora_as_checkpoint = Checkpoint(model_id=3, version_id=30, name="Style One", base_model="SD 1.5")
    assert any(
        "is a LORA, not a Checkpoint" in r
        for r in hallucination_reasons(store, _call(checkpoint=lora_as_checkpoint))
    )
    checkpoint_as_lora = LoRA(model_id=2, version_id=20, name="Wide Mix", weight=1.0)
    assert is_hallucination(store, _call(loras=[checkpoint_as_lora]))


def test_a_lora_on_the_wrong_base_model(store: Store) -> None:
    api = _call(loras=[LORA_XL])
    assert hallucination_reasons(store, api) == ["LoRA 'XL Style' is for SDXL 1.0, the checkpoint is SD 1.5"]
    assert score_answer(store, Answer(api=api), TRUTH).hallucination


def test_a_real_but_wrong_checkpoint_is_an_error_not_a_hallucination(store: Store) -> None:
    api = _call(checkpoint=CKPT_21)
    assert validate_call(store, api) == []
    score = score_answer(store, Answer(api=api), TRUTH)
    assert not score.hallucination and not score.invalid
    assert not score.model_at_1 and not score.model_at_5 and not score.base_at_1


def test_an_unknown_sampler_is_a_hallucination(store: Store) -> None:
    api = _call(sampler="Quantum Flow Karras")
    assert hallucination_reasons(store, api) == [
        "sampler 'Quantum Flow Karras' is not known to any generator"
    ]


def test_every_reason_is_returned_together(store: Store) -> None:
    api = _call(
        checkpoint=CKPT_15.model_copy(update={"name": "Some Other Name", "base_model": "SDXL 1.0"}),
        loras=[LORA_XL, LORA_15, LORA_15.model_copy(update={"weight": 9.0})],
        prompt="  ",
        sampler="nope",
        steps=0,
        cfg_scale=45.0,
        width=513,
        height=4096,
        clip_skip=13,
        seed=-5,
    )
    reasons = validate_call(store, api)
    expected = [
        "checkpoint name 'Some Other Name' does not match",
        "checkpoint base model 'SDXL 1.0'",
        "LoRA 'XL Style' is for SDXL 1.0",
        "LoRA version 30 is applied twice",
        "LoRA weight 9.0 is outside",
        "sampler 'nope'",
        "the prompt is empty",
        "steps 0 is outside",
        "CFG scale 45.0 is outside",
        "width 513 is not a multiple of 8",
        "height 4096 is not a multiple of 8 within",
        "clip skip 13 is outside",
        "seed -5 is negative",
    ]
    assert len(reasons) == len(expected)
    for fragment in expected:
        assert sum(fragment in reason for reason in reasons) == 1, fragment
    assert len(hallucination_reasons(store, api)) == 2  # the XL LoRA and the sampler


def test_steps_tolerance_edges() -> None:
    assert steps_match(25, 20) and steps_match(15, 20)  # exactly 25% away: inside
    assert not steps_match(26, 20) and not steps_match(14, 20)
    assert steps_match(30, 24) and not steps_match(31, 24)


def test_cfg_tolerance_edges() -> None:
    assert cfg_match(8.5, 7.0) and cfg_match(5.5, 7.0)  # exactly 1.5 away: inside
    assert not cfg_match(8.51, 7.0) and not cfg_match(5.49, 7.0)
    assert cfg_match(4.6, 3.1) and not cfg_match(4.7, 3.1)


def test_sampler_matches_after_normalisation_only() -> None:
    assert sampler_match("dpmpp_2m_karras", "DPM++ 2M Karras")
    assert sampler_match("k_euler_a", "Euler a")
    assert not sampler_match("Euler", "Euler a")
    assert not sampler_match("made up", "made up")  # a sampler no generator knows is never right


def test_params_needs_all_three(store: Store) -> None:
    inside = score_answer(store, Answer(api=_call(steps=25, cfg_scale=8.5, sampler="dpmpp_2m_karras")), TRUTH)
    assert inside.sampler and inside.steps and inside.cfg and inside.params
    one_off = score_answer(store, Answer(api=_call(steps=26, cfg_scale=8.5)), TRUTH)
    assert one_off.sampler and not one_off.steps and one_off.cfg and not one_off.params


def test_base_match_by_family_then_string() -> None:
    assert base_match("SD 1.4", "SD 1.5") and base_match("SD 2.1 768", "SD 2.0")
    assert not base_match("SDXL 1.0", "SD 1.5")
    assert base_match("Other", "other") and not base_match("Other", "SD 1.5")


def _alt(checkpoint: Checkpoint, score: float) -> Alternative:
    return Alternative(**_call(checkpoint=checkpoint).model_dump(), score=score)


def test_model_at_5_counts_each_model_once(store: Store) -> None:
    others = [
        Checkpoint(model_id=100 + i, version_id=1000 + i, name=f"m{i}", base_model="SD 1.5") for i in range(5)
    ]
    # The answer's own model repeated among the alternatives takes one slot only.
    answer = Answer(
        api=_call(checkpoint=others[0]), alternatives=[_alt(others[0], 1.0), _alt(others[0], 0.9)]
    )
    answer.alternatives += [_alt(c, 0.5) for c in others[1:4]] + [_alt(CKPT_15, 0.1)]
    assert candidate_models(answer) == [100, 101, 102, 103, 1]
    score = score_answer(store, answer, TRUTH)
    assert score.model_at_5 and not score.model_at_1
    answer.alternatives.insert(-1, _alt(others[4], 0.2))  # now the truth is sixth
    assert not score_answer(store, answer, TRUTH).model_at_5


def test_percentiles_and_empty_means() -> None:
    assert percentile(range(1, 11), 50) == pytest.approx(5.5)
    assert percentile(range(1, 11), 95) == pytest.approx(9.55)
    assert percentile([3.0], 95) == 3.0 and percentile([], 50) is None
    assert all(value is None for value in mean_scores([]).values())


def test_spread_keeps_order_and_reaches_the_end() -> None:
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread(list(range(4)), 10) == [0, 1, 2, 3] and spread(list(range(4)), None) == [0, 1, 2, 3]


class _ScriptedAgent(Agent):
    """Answers from a fixed table: the wrong-but-real checkpoint for 'b', a hallucination for 'c'."""

    name = "scripted"

    def select(self, prompt: str, k: int = 5) -> Answer:
        if prompt.startswith("b"):
            return Answer(api=_call(checkpoint=CKPT_21, prompt=prompt))
        if prompt.startswith("c"):
            return Answer(api=_call(sampler="nope", prompt=prompt, steps=40))
        return Answer(api=_call(prompt=prompt))


def _pair(index: int, instruction: str, novel: bool) -> Pair:
    source = PairSource(model_id=1, version_id=10, image_id=index)
    return Pair(id=f"p{index}", instruction=instruction, api=TRUTH, source=source, novel=novel)


def test_evaluate_rows_overall_and_on_the_novel_subset(store: Store) -> None:
    pairs = [
        _pair(1, "a one", False),
        _pair(2, "b two", True),
        _pair(3, "c three", True),
        _pair(4, "a four", True),
    ]
    row = evaluate(_ScriptedAgent(), pairs, store, latency_prompts=2)
    assert row["agent"] == "scripted" and row["n"] == 4 and row["novel/n"] == 3
    assert row["model@1"] == 0.75 and row["novel/model@1"] == pytest.approx(2 / 3)
    assert row["hallucination"] == 0.25 and row["novel/hallucination"] == pytest.approx(1 / 3)
    assert row["base@1"] == 0.75 and row["steps"] == 0.75 and row["params"] == 0.75
    assert "reward" not in row and "novel/reward" not in row
    for key in ("latency_ms_p50", "latency_ms_p95", "prompts_per_s", "novel/latency_ms_p95"):
        assert row[key] > 0
    json.dumps({"rows": [row]})  # the --json shape is plain JSON
    table = render_markdown([row])
    assert "| scripted | all | 4 |" in table and "| scripted | novel | 3 |" in table
    assert "reward: not reported" in table


def test_evaluate_without_novel_flags_has_no_novel_keys(store: Store) -> None:
    pairs = [_pair(1, "a one", False).model_copy(update={"novel": None})]
    row = evaluate(_ScriptedAgent(), pairs, store, latency_prompts=1)
    assert row["n"] == 1 and not any(key.startswith("novel/") for key in row)
