"""The offline proxy reward on the image pairs of a small catalogue (``dump_records``: the shared dump's
first 600 models, or the fixture catalogue)."""

from __future__ import annotations

import random
import sys

import pytest

from diffagent.catalog import Store
from diffagent.reward import PROXY_NAME, ProxyReward, Reward
from diffagent.reward.proxy import WEIGHTS_WITH_REFERENCE, WEIGHTS_WITHOUT_REFERENCE
from diffagent.schema import APICall, Checkpoint, LoRA, normalize_sampler


@pytest.fixture(scope="module")
def store(dump_records, tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("proxy") / "catalog.sqlite")
    with store.transaction():
        for record in dump_records:
            store.upsert_model(record)
    return store


@pytest.fixture(scope="module")
def reward(store: Store) -> ProxyReward:
    return ProxyReward(store)


def _checkpoint(store: Store, version_id: int) -> Checkpoint:
    ref = store.version(version_id)
    assert ref is not None
    return Checkpoint(
        model_id=ref.model_id,
        version_id=ref.version_id,
        name=ref.model_name,
        base_model=ref.base_model or "Other",
    )


@pytest.fixture(scope="module")
def pairs(store: Store, reward: ProxyReward) -> list[tuple[str, APICall]]:
    """Real (instruction, call) pairs: safe sample images whose model hash names a catalogue checkpoint,
    with the image's own parameters; those the catalogue validator rejects are left out."""
    rows = store.conn.execute(
        "SELECT i.prompt, i.negative_prompt, i.sampler, i.steps, i.cfg_scale, i.gen_width, i.gen_height, "
        "i.clip_skip, f.version_id FROM images i JOIN files f ON f.autov2 = i.model_hash "
        "JOIN versions v ON v.id = f.version_id JOIN models m ON m.id = v.model_id "
        "WHERE m.type = 'Checkpoint' AND i.nsfw = 'None' AND i.prompt IS NOT NULL AND i.steps IS NOT NULL "
        "AND i.cfg_scale IS NOT NULL AND i.gen_width IS NOT NULL ORDER BY i.id"
    ).fetchall()
    out = []
    for prompt, negative, sampler, steps, cfg, width, height, clip_skip, version_id in rows:
        if normalize_sampler(sampler) is None:
            continue
        api = APICall(
            checkpoint=_checkpoint(store, version_id), prompt=prompt, negative_prompt=negative or "",
            sampler=normalize_sampler(sampler), steps=steps, cfg_scale=cfg, width=width, height=height,
            clip_skip=clip_skip or 1,
        )  # fmt: skip
        if not reward.problems(api):
            out.append((prompt, api))
    return out[:300]


def _random_checkpoint(store: Store, api: APICall, rng: random.Random) -> APICall:
    """The same call on another real checkpoint of the catalogue, chosen at random."""
    rows = store.conn.execute(
        "SELECT v.id FROM versions v JOIN models m ON m.id = v.model_id "
        "WHERE m.type = 'Checkpoint' AND v.id != ? ORDER BY v.id",
        (api.checkpoint.version_id,),
    )
    version_id = rng.choice([row[0] for row in rows])
    return api.model_copy(update={"checkpoint": _checkpoint(store, version_id)})


def _hallucinated(api: APICall) -> APICall:
    fake = Checkpoint(
        model_id=987654321, version_id=987654321, name="Realistic Dream XL", base_model="SD 1.5"
    )
    return api.model_copy(update={"checkpoint": fake})


def test_ground_truth_beats_random_checkpoint_and_hallucination(store, reward, pairs) -> None:
    assert len(pairs) >= 100
    rng = random.Random(0)
    without_reference_wins = 0
    for instruction, truth in pairs:
        other = _random_checkpoint(store, truth, rng)
        best, random_score, fake = reward.score_many(instruction, [truth, other, _hallucinated(truth)], truth)
        assert best > random_score > fake == 0.0
        plain = reward.score_many(instruction, [truth, other])
        without_reference_wins += plain[0] > plain[1]
    # Without the real call only typicality, popularity and prompt fidelity speak; they favour the truth.
    assert without_reference_wins / len(pairs) >= 0.85  # measured: 287 of 300


def test_scores_are_deterministic_in_range_and_explained(store, reward, pairs) -> None:
    again = ProxyReward(store)
    calls = [api for _, api in pairs[:50]]
    for reference in (None, calls[0]):
        scores = reward.score_many(pairs[0][0], calls, reference)
        assert scores == again.score_many(pairs[0][0], calls, reference)
        assert all(0.0 <= s <= 1.0 for s in scores)
    instruction, truth = pairs[1]
    for reference, weights in ((truth, WEIGHTS_WITH_REFERENCE), (None, WEIGHTS_WITHOUT_REFERENCE)):
        report = reward.explain(instruction, truth, reference)
        assert report["reward"] == PROXY_NAME == "offline-proxy-v1" and report["valid"]
        assert report["weights"] == weights and sum(weights.values()) == pytest.approx(1.0)
        assert set(report["components"]) == set(weights)
        assert report["total"] == pytest.approx(sum(weights[k] * report["components"][k] for k in weights))
        assert report["total"] == reward.score(instruction, truth, reference)
    assert reward.explain(instruction, truth, truth)["components"]["agreement"] == pytest.approx(1.0)


def test_agreement_grades_closeness_to_the_real_call(reward, pairs) -> None:
    instruction, truth = pairs[0]
    exact = reward.score(instruction, truth, truth)
    near = truth.model_copy(update={"steps": truth.steps + 2})
    far = truth.model_copy(update={"steps": truth.steps * 3, "cfg_scale": truth.cfg_scale + 5})
    assert exact > reward.score(instruction, near, truth) > reward.score(instruction, far, truth)
    dropped = truth.model_copy(update={"prompt": "something else entirely"})
    assert reward.score(instruction, dropped, truth) < exact  # the user's words must reach the generator


def test_invalid_calls_get_the_minimum(store, reward, pairs) -> None:
    instruction, truth = pairs[0]
    lora_id = store.conn.execute(
        "SELECT v.id FROM versions v JOIN models m ON m.id = v.model_id WHERE m.type = 'LORA' LIMIT 1"
    ).fetchone()[0]
    lora_ref = store.version(lora_id)
    wrong_model = LoRA(
        model_id=lora_ref.model_id + 1, version_id=lora_id, name=lora_ref.model_name, weight=0.8
    )
    invalid = [
        _hallucinated(truth),
        truth.model_copy(update={"sampler": "Euler Ultra"}),
        truth.model_copy(update={"loras": [wrong_model]}),
    ]
    assert reward.score_many(instruction, invalid, truth) == [0.0, 0.0, 0.0]
    report = reward.explain(instruction, invalid[0])
    assert not report["valid"] and report["problems"]


def test_minimal_checks_when_the_catalogue_validator_is_absent(store, pairs, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "diffagent.catalog.validate", None)  # import fails as if not written
    reward = ProxyReward(store)
    instruction, truth = pairs[0]
    assert reward.problems(truth) == []
    assert reward.score(instruction, _hallucinated(truth)) == 0.0
    assert reward.score(instruction, truth.model_copy(update={"sampler": "Euler Ultra"})) == 0.0
    assert reward.score(instruction, truth) > 0.0


def test_proxy_is_a_reward_for_the_trainer(reward, pairs) -> None:
    instruction, truth = pairs[0]
    assert isinstance(reward, Reward)
    assert reward.name == PROXY_NAME
    assert reward.score_calls(instruction, [truth], truth) == reward.score_many(instruction, [truth], truth)
    assert reward.score_calls(instruction, []) == []
