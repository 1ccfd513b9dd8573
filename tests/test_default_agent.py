"""The default agent on a small catalogue (the first 600 models of the shared dump, or the fixture dump) built
in the test."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import needs_dump
from diffagent._fork import WorkerDied
from diffagent.agents import Agent, load_agent
from diffagent.agents.default import agent as default_agent
from diffagent.agents.default.agent import (
    DefaultIndex,
    RetrievalAgent,
    build_default_agent,
    cache_dir,
    examples_key,
)
from diffagent.agents.default.index import prompt_shape
from diffagent.bench import Pair, load_pairs
from diffagent.bench.build import build_bench
from diffagent.bench.metrics import mean_scores, score_answer
from diffagent.catalog import Store, compatible, family
from diffagent.catalog.validate import validate_call
from diffagent.errors import UserInputError
from diffagent.schema import Answer


def _first_checkpoint_with_images(records: list[dict]) -> int:
    for record in records:
        if record.get("type") == "Checkpoint" and any(
            image.get("meta") for v in record["modelVersions"] for image in v.get("images") or []
        ):
            return record["id"]
    raise AssertionError("no checkpoint with sample images")


@pytest.fixture(scope="module")
def small(dump_records: list[dict], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A store of the dump records, one checkpoint flagged NSFW, its DABench pairs and a trained agent."""
    records = copy.deepcopy(dump_records)
    hidden = _first_checkpoint_with_images(records)
    for record in records:
        if record["id"] == hidden:
            record["nsfw"] = True
    root = tmp_path_factory.mktemp("small")
    store = Store(root / "catalog.sqlite")
    with store.transaction():
        for record in records:
            store.upsert_model(record)
    build_bench(store, root / "bench")
    pairs = {split: load_pairs(root / "bench" / f"{split}.jsonl") for split in ("train", "val", "test")}
    with pytest.MonkeyPatch.context() as patch:
        home = root / "home"
        patch.setenv("DIFFAGENT_HOME", str(home))
        ticks: list[tuple[int, int]] = []
        agent = build_default_agent(store, pairs["train"], progress=lambda *step: ticks.append(step))
    return {"store": store, "pairs": pairs, "agent": agent, "ticks": ticks, "home": home, "hidden": hidden}


def _metrics(agent: Agent, store: Store, pairs: list[Pair]) -> dict:
    answers = agent.select_batch([p.instruction for p in pairs])
    return mean_scores([score_answer(store, a, p.api) for a, p in zip(answers, pairs, strict=True)])


# The low-confidence threshold (a ranker probability, issue 10) was calibrated on the real dump's val split;
# on the 38-model fixture the ranker's scores are flatter, nearly every answer falls under it and takes the
# general-model fallback, so these two hold on the real catalogue only (a limitation noted in issue 10).
@needs_dump
def test_ranker_trains_on_a_small_catalogue_and_beats_tfidf(small: dict) -> None:
    agent: RetrievalAgent = small["agent"]
    report = agent.index.report
    assert report["train_queries"] > 100
    assert report["candidate_recall"] > 0.8
    assert small["ticks"] and small["ticks"][-1][0] == small["ticks"][-1][1]  # progress reached the end
    assert len(list((small["home"] / "default-agent").glob("*.npz"))) == 1

    store, held = small["store"], small["pairs"]["val"] + small["pairs"]["test"]
    ours = _metrics(agent, store, held)
    theirs = _metrics(load_agent("tfidf", store, small["pairs"]["train"]), store, held)
    assert ours["model@1"] >= theirs["model@1"]
    assert ours["model@5"] >= 0.75
    assert ours["hallucination"] == 0.0


def test_answers_are_executable_catalogue_calls(small: dict) -> None:
    agent, store = small["agent"], small["store"]
    held = small["pairs"]["test"]
    for answer in agent.select_batch([p.instruction for p in held], k=5):
        assert 1 <= len(answer.alternatives) <= 5
        assert answer.alternatives[0].model_dump(exclude={"score"}) == answer.api.model_dump()
        assert len({alt.checkpoint.model_id for alt in answer.alternatives}) == len(answer.alternatives)
        scores = [alt.score for alt in answer.alternatives]
        assert scores == sorted(scores, reverse=True)
        for call in answer.alternatives:
            assert validate_call(store, call) == []
        for item in answer.evidence:
            assert item.url and item.url.startswith("https://")


def test_a_checkpoint_published_with_a_vae_brings_it(small: dict) -> None:
    """Each call names the VAE its checkpoint version is published with, and only then."""
    from diffagent.agents.default.params import published_vaes

    agent, store = small["agent"], small["store"]
    vaes = published_vaes(store)
    calls = [
        call
        for answer in agent.select_batch([p.instruction for p in small["pairs"]["test"]], k=5)
        for call in answer.alternatives
    ]
    assert all(call.vae == vaes.get(call.checkpoint.version_id) for call in calls)
    with_vae = [call for call in calls if call.vae is not None]
    assert with_vae and all(validate_call(store, call) == [] for call in with_vae)
    assert all("vae" not in call.model_dump() for call in calls if call.vae is None)


def test_an_embedding_the_catalogue_holds_stays_in_the_negative_and_is_listed(
    small: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffagent.agents.default import RetrievalAgent
    from diffagent.agents.default.embeddings import CatalogEmbeddings

    agent = small["agent"]
    base = agent.select("a lighthouse at dusk").api.checkpoint.base_model
    holder = Store()  # a catalogue whose one textual inversion suits the pick's family
    holder.upsert_model({
        "id": 3, "name": "EasyNegative", "type": "TextualInversion",
        "modelVersions": [{"id": 30, "baseModel": base, "trainedWords": ["easynegative"], "files": [
            {"name": "easynegative.safetensors", "primary": True,
             "hashes": {"SHA256": "ab" * 32, "AutoV2": "ab" * 5}, "downloadUrl": "https://civitai.com/x"}]}],
    })  # fmt: skip
    monkeypatch.setattr(agent.index, "negative", lambda model: "easynegative, badhandv4, lowres")
    fresh = RetrievalAgent(agent.store, agent.index, agent.flt)
    fresh.__dict__["embeddings"] = CatalogEmbeddings(holder, agent.flt)
    api = fresh.select("a lighthouse at dusk").api
    assert api.negative_prompt.startswith("easynegative, lowres") and "badhandv4" not in api.negative_prompt
    assert [(e.version_id, e.trigger_words) for e in api.embeddings or ()] == [(30, ["easynegative"])]
    plain = RetrievalAgent(agent.store, agent.index, agent.flt).select("a lighthouse at dusk").api
    assert plain.embeddings is None and "easynegative" not in plain.negative_prompt


def test_single_and_batch_answers_agree(small: dict) -> None:
    agent = small["agent"]
    prompts = [p.instruction for p in small["pairs"]["val"][:8]]
    batch = agent.select_batch(prompts, k=3)
    for prompt, answer in zip(prompts, batch, strict=True):
        assert agent.select(prompt, k=3) == answer


def test_a_batch_answered_in_chunks_equals_one_chunk(small: dict, monkeypatch) -> None:
    """Prompts are answered a chunk at a time (64, to bound the dense rows each holds): chunk boundaries
    change no answer."""
    prompts = [p.instruction for p in small["pairs"]["test"][:40]]
    whole = [a.model_dump_json() for a in small["agent"].select_batch(prompts)]
    monkeypatch.setattr(default_agent, "_BATCH", 7)
    assert [a.model_dump_json() for a in small["agent"].select_batch(prompts)] == whole


def test_worker_processes_answer_a_large_batch_as_one_process_does(small: dict) -> None:
    store, pairs = small["store"], small["pairs"]
    prompts = [p.instruction for p in pairs["train"] + pairs["test"]]
    prompts = (prompts * (300 // len(prompts) + 1))[:300]  # enough to be shared (and split unevenly)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFAGENT_HOME", str(small["home"]))  # the cached index, not a rebuild
        shared = build_default_agent(store, pairs["train"], workers=2)
    try:
        expected = small["agent"].select_batch(prompts, k=3)
        assert shared.select_batch(prompts, k=3) == expected
        assert len(set(shared.worker_pids)) == 2  # it did fork two workers
        os.kill(shared.worker_pids[0], signal.SIGKILL)  # killed between batches, as for memory
        with pytest.raises(WorkerDied, match="died"):
            shared.select_batch(prompts, k=3)
        assert shared.select_batch(prompts, k=3) == expected  # new workers answer the next batch
        with pytest.raises(UserInputError, match="empty"):  # refused here, before any worker runs
            shared.select_batch([*prompts, "  "])
        assert shared.select(prompts[0]) == small["agent"].select(prompts[0])  # one prompt: no worker
    finally:
        shared.close()
    assert shared.worker_pids == []
    # a build whose ranker features two workers make trains the same ranker
    rebuilt = DefaultIndex.build(store, pairs["train"], "not cached", workers=2)
    assert rebuilt.ranker.model == small["agent"].index.ranker.model
    # a catalogue in memory cannot be opened by another process: the batch is answered here
    memory = RetrievalAgent(Store(), small["agent"].index, small["agent"].flt, workers=2)
    assert memory._workers() is None
    with pytest.raises(UserInputError, match="workers"):
        build_default_agent(store, pairs["train"], workers=-1)


def test_parameters_follow_the_chosen_checkpoints_examples(small: dict) -> None:
    """A training prompt asked again gets its own checkpoint and settings back."""
    agent, train = small["agent"], small["pairs"]["train"]
    used: dict[int, set[str]] = {}
    for pair in train:
        used.setdefault(pair.api.checkpoint.model_id, set()).add(pair.api.sampler)
    checked = same_sampler = 0
    for pair in train[:20]:
        api = agent.select(pair.instruction, k=1).api
        if api.checkpoint.model_id != pair.api.checkpoint.model_id:
            continue
        checked += 1
        # a near tie may pick a sibling setting, but always one this checkpoint's examples use
        assert api.sampler in used[api.checkpoint.model_id], (api.sampler, used[api.checkpoint.model_id])
        same_sampler += api.sampler == pair.api.sampler
        assert abs(api.steps - pair.api.steps) <= 0.25 * pair.api.steps
        assert abs(api.cfg_scale - pair.api.cfg_scale) <= 1.5
    assert checked >= 15  # a training prompt nearly always gets its own checkpoint back
    assert same_sampler >= 0.75 * checked


def test_nsfw_models_only_when_allowed(small: dict) -> None:
    store, hidden = small["store"], small["hidden"]
    name = store.conn.execute("SELECT name FROM models WHERE id = ?", (hidden,)).fetchone()[0]
    safe = small["agent"]
    answer = safe.select(name, k=5)
    assert hidden not in {alt.checkpoint.model_id for alt in answer.alternatives}
    position = safe.index.checkpoints.position[hidden]
    assert not safe.allowed[position]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFAGENT_HOME", str(small["home"]))
        daring = build_default_agent(store, small["pairs"]["train"], allow_nsfw=True)
    assert daring.allowed[position]


def test_base_model_filter(small: dict) -> None:
    store, pairs = small["store"], small["pairs"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFAGENT_HOME", str(small["home"]))
        sd2 = build_default_agent(store, pairs["train"], base_models=["SD 2.1 768", "SD 2.1"])
        with pytest.raises(UserInputError, match="filter"):
            build_default_agent(store, pairs["train"], base_models=["Flux.1 D"])
    for answer in sd2.select_batch([p.instruction for p in pairs["val"]], k=5):
        assert {alt.checkpoint.base_model for alt in answer.alternatives} <= {"SD 2.1 768", "SD 2.1"}


def _a_lora(store: Store) -> tuple[str, int, str, list[str]]:
    """File stem, model id, base model and trigger words of an SD 1.x LoRA of the store."""
    row = store.conn.execute(
        """SELECT f.name, m.id, v.base_model, v.trained_words FROM files f
           JOIN versions v ON v.id = f.version_id JOIN models m ON m.id = v.model_id
           WHERE m.type = 'LORA' AND v.base_model = 'SD 1.5' AND f.is_primary = 1 AND v.position = 0
           ORDER BY m.id LIMIT 1"""
    ).fetchone()
    return re.sub(r"\.[^.]+$", "", row[0]), row[1], row[2], json.loads(row[3])


def test_loras_named_in_the_prompt_are_used_only_where_compatible(small: dict) -> None:
    store, pairs = small["store"], small["pairs"]
    stem, lora_id, lora_base, words = _a_lora(store)
    prompt = f"a castle on a hill at sunset, detailed <lora:{stem}:0.65>"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFAGENT_HOME", str(small["home"]))
        sd1 = build_default_agent(store, pairs["train"], base_models=["SD 1.5"])
        sd2 = build_default_agent(store, pairs["train"], base_models=["SD 2.1 768"])
    api = sd1.select(prompt).api
    (lora,) = [lo for lo in api.loras if lo.model_id == lora_id]
    assert lora.weight == pytest.approx(0.65)
    assert "<lora:" not in api.prompt
    for word in words:
        assert word.lower() in api.prompt.lower()
    assert family(lora_base) != family("SD 2.1 768")
    assert all(lo.model_id != lora_id for lo in sd2.select(prompt).api.loras)
    # every LoRA the agent picks by itself suits its checkpoint
    for answer in sd1.select_batch([p.instruction for p in pairs["val"] + pairs["test"]]):
        for call in answer.alternatives:
            for lo in call.loras:
                ref = store.version(lo.version_id)
                assert ref is not None and compatible(ref.base_model, call.checkpoint.base_model)


@needs_dump
def test_low_confidence_when_nothing_matches(small: dict) -> None:
    agent, store = small["agent"], small["store"]
    odd = agent.select("qzxv wplk grmbl")
    assert odd.low_confidence
    assert validate_call(store, odd.api) == []
    known = agent.select(small["pairs"]["train"][0].instruction)
    assert known.evidence[0].similarity > 0.9
    # a prompt the examples hold is mostly answered with confidence (not always: the same prompt may have
    # been used with several checkpoints, and then the ranker's probability of its pick is low)
    answers = agent.select_batch([p.instruction for p in small["pairs"]["train"][:60]])
    assert sum(a.low_confidence for a in answers) < len(answers) / 2
    with pytest.raises(UserInputError):
        agent.select("   ")


def test_index_is_cached_and_rebuilt_when_the_catalogue_or_examples_change(small: dict, dump_records) -> None:
    store, pairs = small["store"], small["pairs"]
    key = examples_key(store, pairs["train"])
    assert key != examples_key(store, pairs["train"][:-1])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFAGENT_HOME", str(small["home"]))
        assert (cache_dir() / f"{key}.npz").is_file()
        again = build_default_agent(store, pairs["train"])  # loaded, not rebuilt
        assert again.index.key == key and again.index.report == small["agent"].index.report
    other = Store(":memory:")
    with other.transaction():
        for record in dump_records[:200]:
            other.upsert_model(record)
    before = other.revision
    changed = copy.deepcopy(dump_records[0])
    changed["name"] += " (renamed)"
    other.upsert_model(changed)
    assert other.revision != before
    some = pairs["train"][:5]
    assert examples_key(other, some) != examples_key(Store(":memory:"), some)


def test_empty_examples_are_refused(small: dict) -> None:
    with pytest.raises(UserInputError, match="DABench"):
        build_default_agent(small["store"], [])


def test_python_api_and_train_command(dump_records: list[dict], tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DIFFAGENT_HOME", str(home))
    from diffagent import DiffAgent
    from diffagent.cli import app
    from diffagent.config import store_path

    with pytest.raises(UserInputError, match="empty"):
        DiffAgent()
    with Store(store_path()) as store, store.transaction():
        for record in dump_records[:300]:
            store.upsert_model(record)
    result = CliRunner().invoke(app, ["train", "ranker"])
    assert result.exit_code == 0, result.output
    assert "held-out model@1" in result.output
    with DiffAgent() as agent:
        answer = agent.select("portrait of a woman, photorealistic, detailed skin", k=3)
        assert isinstance(answer, Answer)
        assert len(answer.alternatives) == 3
        assert len(agent.select_batch(["a red car", "a dragon"])) == 2
    assert len(list((home / "default-agent").glob("*.npz"))) == 1  # the command's index was reused


def test_import_diffagent_stays_cheap() -> None:
    code = "import sys, diffagent; assert 'sklearn' not in sys.modules and 'lightgbm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prompt_shape_keeps_how_a_prompt_is_written_not_what_it_says() -> None:
    assert prompt_shape("(masterpiece:1.2), Best quality,  1girl") == "(a:1.2), xa a, 1a"
    assert prompt_shape("((a cat)),BREAK 城市") == "((a a)),x u"
    # two prompts about different things, written alike, share a shape; the same words written apart do not
    assert prompt_shape("(red fox:1.3), forest") == prompt_shape("(old car:1.3), street")
    assert prompt_shape("red fox, forest") != prompt_shape("Red Fox,forest")


def test_candidates_take_each_route_once_and_only_models_the_filter_allows() -> None:
    from types import SimpleNamespace

    from diffagent.agents.default.ranker import candidates

    models = 30
    vote = np.random.default_rng(3).random((1, models)).astype(np.float32)
    card = np.zeros((1, models), dtype=np.float32)
    card[0, 29] = 5.0  # only the card vouches for model 29 (the weakest by vote)
    vote[0, 29] = -1.0
    zeros = ("centroid", "log_count", "lora", "name")
    dense = {name: np.zeros((1, models), dtype=np.float32) for name in zeros}
    dense |= {"vote100": vote, "card": card, "style": np.ones_like(vote), "style_suits": np.ones_like(vote)}
    sig = SimpleNamespace(intent=np.array([-1]), dense=dense)
    ckpts = SimpleNamespace(log_downloads=np.linspace(2, 1, models, dtype=np.float32))
    allowed = np.ones(models, dtype=bool)
    allowed[[0, 1]] = False
    got = candidates(sig, allowed, ckpts, n=12, n_card=3, n_style=2)  # type: ignore[arg-type]
    row = got[0].tolist()
    assert len(row) == len(set(row)) == 12 and not {0, 1} & set(row)
    assert row[-2:] == [2, 3]  # the style columns last: the most downloaded it may name
    assert 29 in row[-5:-2]  # by its card alone
    without = candidates(sig, allowed, ckpts, n=12, n_card=0, n_style=2)  # type: ignore[arg-type]
    assert 29 not in without[0].tolist()


def test_the_shape_vote_counts_neighbours_written_alike(small: dict) -> None:
    """The ranker's shape signals come from the examples nearest by shape: a prompt written exactly like an
    example votes for that example's checkpoint at full similarity."""
    agent: RetrievalAgent = small["agent"]
    examples, checkpoints = agent.index.examples, agent.index.checkpoints
    text = examples.texts[0]
    sig = agent.index.signals([text])
    assert sig.dense["shape_best"][0, examples.model[0]] == pytest.approx(1.0, abs=1e-5)
    assert sig.dense["shape_vote"][0, examples.model[0]] >= 1.0 - 1e-5
    assert sig.dense["shape_vote"].shape == (1, len(checkpoints))


def test_similarities_are_the_sparse_product_made_dense() -> None:
    from scipy import sparse

    from diffagent.agents.default.index import similarities

    rng = np.random.default_rng(3)
    by_term = sparse.random(40, 300, density=0.1, format="csr", dtype=np.float32, random_state=rng)
    queries = sparse.random(7, 40, density=0.2, format="csr", dtype=np.float32, random_state=rng).tolil()
    queries[3] = 0  # a query with no known term
    queries = sparse.csr_matrix(queries)
    queries.eliminate_zeros()
    assert np.array_equal(similarities(queries, by_term), (queries @ by_term).toarray())
