"""The rules a user relies on, each on a small synthetic catalogue built here: safe by default, negatives
of the checkpoint's users without banned terms, sizes within the family, the user's own LoRA tags kept,
few trigger words, low_confidence in batch output, and the user metrics that measure all of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from diffagent.agents.default.agent import _consensus, _consensus_many, build_default_agent, foreign
from diffagent.agents.default.index import SAMPLERS
from diffagent.agents.default.params import activation_words, consensus_negative, orientation_of
from diffagent.bench import load_pairs
from diffagent.bench.build import build_bench
from diffagent.bench.intents import label_prompts, load_intent_set
from diffagent.bench.usersees import UserChecks
from diffagent.catalog import CatalogFilter, Store, latest_versions, recipe, size_ok
from diffagent.catalog.safety import banned_term, embedding_term, negative_polluted, nsfw_level
from diffagent.catalog.styles import prompt_intent
from diffagent.schema import Answer, APICall, Checkpoint, Hires

SUBJECTS = [
    "a cat on a sofa", "a red sports car on a road", "an old lighthouse by the sea", "a bowl of ramen",
    "a mountain lake at dawn", "a castle on a hill", "a robot in a workshop", "a city street at night",
    "a bouquet of roses", "a wooden cabin in the snow", "a dragon over a village", "a sailing ship",
]  # fmt: skip

_NEGATIVE_A = "(worst quality, low quality:1.4), easynegative, blurry, (((asian))), nipples"
_NEGATIVE_B = "worst quality, low quality, blurry, bad anatomy, black people"


def _images(first_id: int, style: str, model_hash: str, size: str = "512x768", **meta: object) -> list[dict]:
    out = []
    for i, subject in enumerate(SUBJECTS):
        out.append(
            {
                "id": first_id + i,
                "url": f"https://image.example/{first_id + i}.png",
                "nsfw": "None",
                "width": 1024,
                "height": 1536,
                "meta": {
                    "prompt": f"{style} of {subject}, highly detailed",
                    "negativePrompt": _NEGATIVE_A if i % 2 else _NEGATIVE_B,
                    "sampler": "DPM++ 2M Karras",
                    "steps": 150 if i == 0 else 28,
                    "cfgScale": 7,
                    "seed": 42 + i,
                    "Size": size,
                    "Model hash": model_hash,
                    "Hires upscale": "2",
                    "Hires upscaler": "Latent",
                    "Denoising strength": "0.5",
                    **meta,
                },
            }
        )
    return out


def _model(
    model_id: int,
    name: str,
    *,
    type_: str = "Checkpoint",
    tags: tuple[str, ...] = (),
    poi: bool = False,
    downloads: int = 100,
    words: tuple[str, ...] = (),
    images: list[dict] | None = None,
    file_name: str | None = None,
) -> dict:
    digest = f"{model_id:010X}"
    return {
        "id": model_id,
        "name": name,
        "type": type_,
        "nsfw": False,
        "poi": poi,
        "tags": list(tags),
        "description": f"<p>{name}</p>",
        "stats": {"downloadCount": downloads, "rating": 4.8, "ratingCount": 10},
        "creator": {"username": f"maker{model_id}"},
        "modelVersions": [
            {
                "id": model_id * 10,
                "name": "v1",
                "baseModel": "SD 1.5",
                "createdAt": "2023-05-01T00:00:00Z",
                "trainedWords": list(words),
                "files": [
                    {
                        "name": file_name or f"model{model_id}.safetensors",
                        "primary": True,
                        "type": "Model",
                        "sizeKB": 1000.0,
                        "hashes": {"AutoV2": digest, "SHA256": digest + "0" * 54},
                        "downloadUrl": f"https://civitai.example/api/download/models/{model_id * 10}",
                    }
                ],
                "images": images or [],
            }
        ],
    }


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four checkpoints: a photo model, an anime model, a real-person model whose examples match the
    prompts best and a nude-tagged one; an explicit LoRA and a pixel-art LoRA."""
    root = tmp_path_factory.mktemp("rules")
    records = [
        _model(1, "Photo Real", tags=("photorealistic",), downloads=5000,
               images=_images(100, "photo", "0000000001")),
        _model(2, "Anime Dream", tags=("anime",), downloads=3000,
               images=_images(200, "anime", "0000000002", size="512x512")),
        _model(3, "Famous Person", tags=("celebrity",), poi=True, downloads=90000,
               images=_images(300, "photo portrait cat sofa car ramen", "0000000003", size="896x1344")),
        _model(4, "Pure Nude Mix", tags=("nude",), downloads=80000,
               images=_images(400, "photo portrait cat sofa car ramen", "0000000004")),
        _model(5, "Pixel Art Style", type_="LORA", tags=("pixel art", "style"),
               words=("pixel art", "pixelart, 16-bit, a very long training caption of many words"),
               file_name="pixel_style.safetensors"),
    ]  # fmt: skip
    store = Store(root / "catalog.sqlite")
    with store.transaction():
        for record in records:
            store.upsert_model(record)
    build_bench(store, root / "bench")
    pairs = [p for split in ("train", "val", "test") for p in load_pairs(root / "bench" / f"{split}.jsonl")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFAGENT_HOME", str(root))
        agent = build_default_agent(store, pairs)
        unsafe = build_default_agent(store, pairs, allow_nsfw=True, allow_poi=True)
    return {"store": store, "pairs": pairs, "agent": agent, "unsafe": unsafe, "root": root}


def test_nsfw_level_from_tags_name_and_image_ratings() -> None:
    assert nsfw_level("Generic Mix", ["landscape"], ["None", "None"]) == 1
    assert nsfw_level("Generic Mix", ["sexy"], ["None"]) == 2
    assert nsfw_level("Generic Mix", [], ["Soft", "Soft", "None"]) == 4
    assert nsfw_level("Generic Mix", [], ["Soft", "None"]) == 2  # half is not most
    assert nsfw_level("Generic Mix", ["NSFW"], []) == 8
    assert nsfw_level("PornVision", [], []) == 8
    assert nsfw_level("Generic Mix", [], [], api_level=1 | 2 | 8) == 8


def test_safety_is_stored_at_import_and_recomputed_for_an_older_store(catalogue: dict) -> None:
    store: Store = catalogue["store"]
    rows = dict(store.conn.execute("SELECT model_id, nsfw_level FROM model_safety"))
    persons = {m for m, p in store.conn.execute("SELECT model_id, person FROM model_safety") if p}
    assert rows[4] == 8 and rows[1] == 1 and persons == {3}
    store.conn.execute("DELETE FROM model_safety")
    reopened = Store(store.path)  # a store written before the table existed is rated on open
    assert dict(reopened.conn.execute("SELECT model_id, nsfw_level FROM model_safety")) == rows
    reopened.close()
    safe = {e.model_id for e in latest_versions(store, CatalogFilter(types=("Checkpoint",)))}
    assert safe == {1, 2}
    everything = CatalogFilter(types=("Checkpoint",), allow_nsfw_models=True, allow_poi=True)
    assert {e.model_id for e in latest_versions(store, everything)} == {1, 2, 3, 4}


def test_poi_and_explicit_models_are_never_picked_by_default(catalogue: dict) -> None:
    prompts = [f"photo portrait cat sofa car ramen of {s}" for s in SUBJECTS]
    for answer in catalogue["agent"].select_batch(prompts):
        names = {answer.api.checkpoint.model_id, *(a.checkpoint.model_id for a in answer.alternatives)}
        assert names <= {1, 2}
    named = {
        alt.checkpoint.model_id for a in catalogue["unsafe"].select_batch(prompts) for alt in a.alternatives
    }
    assert {3, 4} <= named  # the same prompts reach them when the user allows it: the filter did the work


def test_negative_is_a_consensus_without_banned_terms_or_unknown_embeddings(catalogue: dict) -> None:
    answer = catalogue["agent"].select("photo of a cat on a sofa, highly detailed")
    negative = answer.api.negative_prompt
    assert negative and not negative_polluted(negative)
    assert "easynegative" not in negative and "asian" not in negative and "nipples" not in negative
    assert negative not in (_NEGATIVE_A, _NEGATIVE_B)  # never one user's verbatim
    assert {"worst quality", "low quality", "blurry"} <= set(negative.split(", "))
    assert consensus_negative([_NEGATIVE_A]) == ""  # one user's negative is no consensus
    assert banned_term("black people") and banned_term("negative prompt tested: x")
    assert embedding_term("ng_deepnegative_v1_75t") and not embedding_term("bad_anatomy")
    # embeddings inside words and bad_ names that are not Danbooru tags; hyphenated words are words
    for name in (
        "bad-artist negative_hand",
        "drawn by bad-artist",
        "bad_prompt",
        "badhandv4",
        "easynegative",
        "nfixer",
        "unrealisticdream",
        "deformityv6",
        "bhands-neg",
        "rz-neg-foranalogportrait",
    ):
        assert embedding_term(name), name
    # Danbooru's underscores join words: the banned ones stay banned
    for term in ("small_penis", "huge_breasts", "pubic_hair", "glans", "dark_skin"):
        assert banned_term(term), term
    for term in ("nsfw", "nude", "bad_hands", "bad_anatomy", "assistant", "breastplate"):
        assert not banned_term(term), term
    for words in ("bad anatomy", "bad_hands", "low-res", "out-of-frame", "negative space", "bad", "lowres"):
        assert not embedding_term(words), words
    assert consensus_negative(["bad-artist negative_hand, blurry", "drawn by bad-artist, blurry"]) == "blurry"


def test_sizes_and_steps_stay_within_the_family_and_follow_the_prompt(catalogue: dict) -> None:
    agent, unsafe = catalogue["agent"], catalogue["unsafe"]
    for answer in [*agent.select_batch(SUBJECTS), *unsafe.select_batch(SUBJECTS)]:
        api = answer.api
        assert size_ok(api.checkpoint.base_model, api.width, api.height), (api.width, api.height)
        low, high = recipe(api.checkpoint.base_model, api.checkpoint.name).steps_for(api.sampler)
        assert low <= api.steps <= high, (api.sampler, api.steps)
    wide = agent.select("photo of a wide panorama of a mountain lake at dawn").api
    tall = agent.select("photo of a skyscraper at night").api
    assert wide.width > wide.height and tall.height > tall.width
    hires = agent.select("photo of a cat on a sofa, highly detailed").api.hires
    assert hires == Hires(scale=2.0, upscaler="Latent", denoising_strength=0.5, steps=0)
    assert orientation_of("portrait of a man in a wide landscape") is None


def test_user_lora_tags_are_kept_and_trigger_words_are_few(catalogue: dict) -> None:
    agent = catalogue["agent"]
    answer = agent.select("photo of a cat <lora:my_own_lora:0.7> <lora:pixel_style:0.8>")
    assert "<lora:" not in answer.api.prompt  # no generator syntax in the prompt sent (issue 11)
    assert answer.unresolved_loras == ["<lora:my_own_lora:0.7>"]  # the user's own tag, kept and reported
    [lora] = answer.api.loras
    assert lora.model_id == 5 and lora.weight == 0.8 and lora.trigger_words == ["pixel art"]
    assert answer.api.prompt.count("pixel art") == 1
    assert activation_words(["one two three four five", "a, b", "x"]) == ["a, b"]
    # the prompt already says one of its trained words: no caption is appended
    said = agent.select("16-bit pixelart of a cat <lora:pixel_style:0.8>").api
    assert [lo.trigger_words for lo in said.loras] == [[]] and "pixel art" not in said.prompt
    hostile = agent.select("a cat <lora:../../etc/passwd:1>").api.prompt
    assert "passwd" not in hostile


def test_low_confidence_in_batch_output_and_for_other_scripts(catalogue: dict, tmp_path: Path) -> None:
    from diffagent.cli import app

    assert foreign("一只猫坐在沙发上") and not foreign("a cat, café au lait")
    assert catalogue["agent"].select("一只猫坐在沙发上").low_confidence
    # French, German, Spanish by their function words; an English tag list naming a French name is English
    for other in (
        "un chat noir sur un toit de Paris la nuit",
        "eine Katze auf dem Dach",
        "un gato en el cielo",
    ):
        assert foreign(other)
        assert catalogue["agent"].select(other).low_confidence
    assert not foreign("masterpiece, best quality, 1girl, louise francoise le blanc de la valliere, uniform")
    assert not foreign("a harbour at dusk, le corbusier, art deco")
    batch = tmp_path / "in.jsonl"
    batch.write_text('{"id": 1, "prompt": "photo of a cat"}\n{"id": 2, "prompt": "一只猫"}\n')
    out = tmp_path / "out.jsonl"
    env = {"DIFFAGENT_HOME": str(catalogue["root"])}
    result = CliRunner().invoke(app, ["select", "--batch", str(batch), "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["low_confidence"] for line in lines] == [False, True]


def test_user_metrics_flag_what_users_would_not_run(catalogue: dict) -> None:
    checks = UserChecks(catalogue["store"])

    def answer(model_id: int, **fields: object) -> Answer:
        call = {
            "checkpoint": Checkpoint(
                model_id=model_id, version_id=model_id * 10, name="x", base_model="SD 1.5"
            ),
            "prompt": "a cat", "negative_prompt": "blurry", "sampler": "Euler a", "steps": 25,
            "cfg_scale": 7.0, "width": 512, "height": 768, **fields,
        }  # fmt: skip
        return Answer(api=APICall(**call))

    clean = checks.score("photo of a cat", answer(1))
    assert not (clean.unsafe or clean.neg_polluted or clean.params_outside_family or clean.prompt_bloat)
    assert clean.intent_match is True
    assert checks.score("anime cat", answer(1)).intent_match is False
    assert checks.score("a cat", answer(3)).unsafe and checks.score("a cat", answer(4)).unsafe
    assert not checks.score("a nude figure study", answer(4)).unsafe  # asked for explicitly
    assert checks.score("a cat", answer(1, negative_prompt="asian, blurry")).neg_polluted
    assert checks.score("a cat", answer(1, width=896, height=1344)).params_outside_family
    assert checks.score("a cat", answer(1, steps=150)).params_outside_family
    # DPM++ SDE runs the model twice a step: 7 steps is a setting creators recommend; Euler a at 7 is not
    assert not checks.score("a cat", answer(1, steps=7, sampler="DPM++ SDE Karras")).params_outside_family
    assert checks.score("a cat", answer(1, steps=7)).params_outside_family
    assert checks.score("a cat", answer(1, prompt="a cat, " + "x" * 160)).prompt_bloat
    assert checks.score("a cat", answer(1, prompt="a cat, red, red")).prompt_bloat


def test_intent_rules_and_labels(tmp_path: Path) -> None:
    assert prompt_intent("a photo of a cat, 85mm, bokeh") == "photo"
    assert prompt_intent("anime girl by makoto shinkai") == "anime"
    assert prompt_intent("oil painting of a harbour") == "painting"
    assert prompt_intent("pixel art of a cat") == "pixel"
    assert prompt_intent("a cat") is None and prompt_intent("anime photo of a cat") is None
    items = [{"text": t, "image": str(i)} for i, t in enumerate(["a cat", "photo of a dog", "anime boy"])]
    labels = label_prompts(items)
    assert [(label["index"], label["intent"]) for label in labels] == [(1, "photo"), (2, "anime")]
    prompts, label_file = tmp_path / "prompts.json", tmp_path / "labels.jsonl"
    prompts.write_text(json.dumps(items))
    label_file.write_text("\n".join(json.dumps(label) for label in labels))
    assert load_intent_set(label_file, prompts) == [("photo of a dog", "photo"), ("anime boy", "anime")]


def test_trigger_words_never_repeat_a_fragment() -> None:
    from diffagent.agents.default.params import assemble_call
    from diffagent.catalog import VersionRef
    from diffagent.schema import LoRA

    ref = VersionRef(1, 10, "Photo Real", "v1", "Checkpoint", "SD 1.5", ())
    params = {"negative_prompt": "", "sampler": "Euler a", "steps": 20, "cfg_scale": 7.0, "width": 512,
              "height": 768, "clip_skip": 1}  # fmt: skip
    loras = [
        LoRA(model_id=5, version_id=50, name="a", weight=0.8, trigger_words=["pixel art, 16-bit"]),
        LoRA(model_id=6, version_id=60, name="b", weight=0.8, trigger_words=["Pixel Art"]),
    ]
    call = assemble_call(ref, "a cat, 16-bit", params, loras)
    assert call.prompt == "a cat, 16-bit, pixel art"


def test_settings_are_agreed_within_the_family_bounds() -> None:
    """Examples at 80 steps and CFG 14 vote for the nearest setting inside SD 1.5's bounds (60, 12), which
    the metric still counts as theirs; DPM++ SDE's 7 steps stay 7 (two model calls a step)."""
    euler, sde = SAMPLERS.index("Euler a"), SAMPLERS.index("DPM++ SDE Karras")
    sd15 = recipe("SD 1.5")

    def agree(sampler: int, steps: float, cfg: float) -> tuple[int, float, float]:
        many = np.ones(4)
        return _consensus(np.full(4, sampler), np.full(4, steps), np.full(4, cfg), many, sd15)

    assert agree(euler, 80, 14.0) == (euler, 60.0, 12.0)
    assert agree(sde, 7, 7.0) == (sde, 7.0, 7.0)
    assert agree(euler, 7, 7.0)[1] == 10.0
    # a heavy 7-step vote of other checkpoints' examples cannot seed the answer; the own 25 steps win
    samplers, steps = np.array([sde] * 3 + [euler]), np.array([7.0, 7.0, 7.0, 25.0])
    cfgs, weights, own = np.full(4, 7.0), np.array([1.0, 1.0, 1.0, 0.5]), np.array([False] * 3 + [True])
    assert _consensus(samplers, steps, cfgs, weights, sd15)[:2] == (sde, 7.0)
    assert _consensus(samplers, steps, cfgs, weights, sd15, seeds=own)[:2] == (euler, 25.0)
    # an answer's alternatives agree in one pass: each gets what it would get alone, whatever its neighbours
    rng = np.random.default_rng(5)
    votes = [
        (
            rng.integers(0, 6, m),
            rng.choice([7.0, 20, 28, 80], m),
            rng.choice([5.0, 7, 7.5, 14], m),
            rng.random(m),
        )
        for m in (1, 9, 40)
    ]
    many = [
        (*votes[0], sd15, None),
        (*votes[1], None, rng.random(9) < 0.3),
        (*votes[2], sd15, np.zeros(40, bool)),
    ]
    assert _consensus_many(many) == [_consensus(*v) for v in many]
    assert _consensus_many([]) == []


def test_the_llm_agent_drops_unsafe_models_its_decoding_names(catalogue: dict) -> None:
    """The grammar and free decoding can write any catalogue name: the LLM agent's answer filter keeps
    the real-person and nude-tagged checkpoints out unless allowed, and strips such LoRAs from the rest."""
    pytest.importorskip("torch")
    from diffagent.agents.llm import safe_ranked, unsafe_models
    from diffagent.schema import LoRA

    store = catalogue["store"]
    assert unsafe_models(store) == {3, 4}
    assert unsafe_models(store, allow_nsfw=True) == {3} and unsafe_models(store, allow_poi=True) == {4}
    assert unsafe_models(store, allow_nsfw=True, allow_poi=True) == frozenset()

    def call(model_id: int, loras: tuple[int, ...] = ()) -> APICall:
        return APICall(
            checkpoint=Checkpoint(model_id=model_id, version_id=model_id * 10, name="x", base_model="SD 1.5"),
            prompt="a cat", sampler="Euler a", steps=25, cfg_scale=7.0, width=512, height=768,
            loras=[LoRA(model_id=m, version_id=m * 10, name="l", weight=0.8) for m in loras],
        )  # fmt: skip

    ranked = [(call(3), 0.9), (call(1, loras=(4, 5)), 0.5), (call(2), 0.1)]
    kept = safe_ranked(ranked, unsafe_models(store))
    assert [c.checkpoint.model_id for c, _ in kept] == [1, 2]
    assert [lo.model_id for lo in kept[0][0].loras] == [5]
    assert safe_ranked(ranked, frozenset()) == ranked


def test_answers_keep_to_the_limits_the_card_states(catalogue: dict) -> None:
    from diffagent.catalog.cards import CardLimits

    agent = catalogue["agent"]
    model_id = agent.select("photo of a cat on a sofa").api.checkpoint.model_id
    assert agent.card(model_id) == CardLimits()  # its card ("<p>Photo Real</p>") states nothing
    agent._cards[model_id] = CardLimits(min_side=640, cfg_range=(4.0, 5.0), steps_range=(12, 14))
    try:
        api = agent.select("photo of a cat on a sofa").api
    finally:
        agent._cards.pop(model_id)
    assert api.checkpoint.model_id == model_id
    assert 4.0 <= api.cfg_scale <= 5.0 and 12 <= api.steps <= 14 and min(api.width, api.height) >= 640


def test_a_checkpoint_named_for_the_prompts_named_style_comes_first(catalogue: dict) -> None:
    agent = catalogue["agent"]
    checkpoints = agent.index.checkpoints
    photo, anime = (checkpoints.position[m] for m in (1, 2))
    picked, order = np.array([photo, anime]), np.array([0, 1])
    assert agent._naming(["anime dream"], picked, order, None) == 1  # "Anime Dream" is ranked second
    assert agent._naming(["anime dream"], picked, order[::-1], None) is None  # already first
    assert agent._naming(["pixel art"], picked, order, None) is None  # no checkpoint is named for it
    suits = np.zeros(len(checkpoints))
    assert agent._naming(["anime dream"], picked, order, suits) is None  # not the prompt's clear style


def test_a_low_confidence_answer_falls_back_to_a_well_liked_model_of_the_style() -> None:
    """Of the models that make the prompt's style, downloads times the style's share squared: a popular
    model that mostly makes it beats a niche one whose few examples all show it, and a general mix that
    does a little of it; a prompt without a clear style gets the most downloaded."""
    from types import SimpleNamespace

    from diffagent.agents.default.ranker import general_models

    # models: 0 popular anime model (share 0.6), 1 niche anime model (1.0), 2 general mix (0.15 anime),
    # 3 photo model (0.0 anime), 4 an explicit anime model the agent may not name
    downloads = np.log1p(np.array([180_000, 9_000, 260_000, 280_000, 300_000], dtype=np.float32))
    anime = np.array([[0.6, 1.0, 0.15, 0.0, 0.9]], dtype=np.float32)
    sig = SimpleNamespace(
        intent=np.array([1, -1]),
        dense={
            "style": np.vstack([anime, anime]),
            "style_suits": np.array([[1, 1, 1, 0, 1], [1, 1, 1, 0, 1]], dtype=np.float32),
        },
    )
    allowed = np.array([True, True, True, True, False])
    found = general_models(sig, allowed, SimpleNamespace(log_downloads=downloads), n=3)  # type: ignore[arg-type]
    assert found[0].tolist() == [0, 1, 2]  # 180k x 0.36 > 9k x 1 > 260k x 0.0225
    assert found[1].tolist() == [3, 2, 0]  # no clear style: the most downloaded it may name
