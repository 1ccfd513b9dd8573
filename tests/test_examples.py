"""What the default agent learns from beyond DABench's pairs, on a synthetic catalogue built here: images
rated ``Soft`` (they vote for the checkpoint that made them, and a safe agent never shows them), and the
writers of the examples (the checkpoints they use and publish)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from diffagent.agents.default.agent import build_default_agent
from diffagent.agents.default.index import (
    FOLDS,
    PAGE,
    PAIR,
    SOFT,
    Checkpoints,
    Examples,
    PromptIndex,
    Writers,
)
from diffagent.bench import load_pairs
from diffagent.bench.build import build_bench, split_of
from diffagent.bench.text import clean_prompt
from diffagent.catalog import Store
from test_user_rules import _images, _model


def _soft(images: list[dict], first_id: int, hashed: str | None) -> list[dict]:
    """The same images rated Soft, with new ids and prompts, made with ``hashed`` (no hash: None)."""
    out = copy.deepcopy(images)
    for i, image in enumerate(out):
        image["id"] = first_id + i
        image["nsfw"] = "Soft"
        image["meta"]["prompt"] = image["meta"]["prompt"].replace("highly detailed", "soft light, glamour")
        if hashed is None:
            del image["meta"]["Model hash"]
        else:
            image["meta"]["Model hash"] = hashed
    return out


def _creator(record: dict, name: str) -> dict:
    record["creator"] = {"username": name}
    return record


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Alice's photo checkpoint (safe images, and Soft ones without a hash) and her second checkpoint
    with no image at all; Bob's anime checkpoint; Carol's LoRA, whose Soft images were made with Bob's
    checkpoint (by hash) and with a checkpoint the catalogue does not know."""
    root = tmp_path_factory.mktemp("examples")
    photo = _images(100, "photo", "0000000001")
    photo += _soft(photo, 500, None)
    anime = _images(200, "anime", "0000000002")
    records = [
        _creator(_model(1, "Photo Real", tags=("photorealistic",), images=photo), "alice"),
        _creator(_model(2, "Anime Dream", tags=("anime",), images=anime), "bob"),
        _creator(_model(3, "Photo Real Two", tags=("photorealistic",)), "alice"),
        _creator(_model(4, "Glamour Light", type_="LORA", tags=("style",),
                        images=_soft(anime, 600, "0000000002") + _soft(anime, 700, "00000000FF")), "carol"),
    ]  # fmt: skip
    store = Store(root / "catalog.sqlite")
    with store.transaction():
        for record in records:
            store.upsert_model(record)
    build_bench(store, root / "bench")
    pairs = [p for split in ("train", "val", "test") for p in load_pairs(root / "bench" / f"{split}.jsonl")]
    checkpoints = Checkpoints.build(store)
    examples = Examples.build(store, pairs, checkpoints)
    return {"store": store, "pairs": pairs, "root": root, "checkpoints": checkpoints, "examples": examples}


def test_soft_images_are_examples_of_the_checkpoint_that_made_them(catalogue: dict) -> None:
    examples, checkpoints = catalogue["examples"], catalogue["checkpoints"]
    kind = dict(zip(examples.image_id.tolist(), examples.kind.tolist(), strict=True))
    made = {
        int(image): int(checkpoints.model_ids[model])
        for image, model in zip(examples.image_id, examples.model, strict=True)
    }
    assert {kind[i] for i in range(100, 112)} == {PAIR}  # DABench's pairs stay what they were
    assert all(kind[i] == SOFT and made[i] == 1 for i in range(500, 512))  # no hash: the checkpoint's page
    assert all(kind[i] == SOFT and made[i] == 2 for i in range(600, 612))  # a LoRA's page: by the hash
    assert not any(i in kind for i in range(700, 712))  # a hash the catalogue does not know
    assert PAGE not in kind.values()  # every safe image here is a DABench pair already
    assert all(examples.loras[i] == () for i in np.flatnonzero(examples.kind == SOFT))


def test_soft_images_keep_to_the_splits_of_the_pairs(catalogue: dict) -> None:
    train = [p for p in catalogue["pairs"] if split_of(p.instruction) == "train"]
    examples = Examples.build(catalogue["store"], train, catalogue["checkpoints"])
    soft = [examples.texts[i] for i in np.flatnonzero(examples.kind == SOFT)]
    assert soft and all(split_of(text) == "train" for text in soft)
    every = [clean_prompt(image["meta"]["prompt"]) for image in _soft(_images(0, "photo", "x"), 0, None)]
    assert len(soft) < 2 * len(every)  # some of them fall in val or test, and are left out


def test_a_safe_agent_never_shows_a_soft_image_as_evidence(catalogue: dict, monkeypatch) -> None:
    monkeypatch.setenv("DIFFAGENT_HOME", str(catalogue["root"]))
    store, pairs = catalogue["store"], catalogue["pairs"]
    safe = build_default_agent(store, pairs)
    unsafe = build_default_agent(store, pairs, allow_nsfw=True, allow_poi=True)
    soft_ids = set(range(500, 512)) | set(range(600, 612))
    prompt = "photo of a cat on a sofa, soft light, glamour"
    shown = [e.image_id for e in safe.select(prompt).evidence]
    assert shown and not soft_ids & set(shown)
    assert soft_ids & {e.image_id for e in unsafe.select(prompt).evidence}
    # Alice's second checkpoint has no example, but her prompts' writer published it
    sig = safe.index.signals([prompt])
    second = safe.index.checkpoints.position[3]
    assert sig.dense["writer_publishes"][0, second] > 0 and sig.dense["vote100"][0, second] == 0


def test_writers_point_at_the_checkpoints_they_use_and_publish(catalogue: dict) -> None:
    store, examples, checkpoints = catalogue["store"], catalogue["examples"], catalogue["checkpoints"]
    prompts = PromptIndex.build(examples, len(checkpoints))
    writers = Writers.build(store, examples, checkpoints, prompts)
    position = checkpoints.position
    alice = int(writers.of_example[list(examples.image_id).index(100)])
    assert writers.publishes[position[3], alice] == 1  # her second checkpoint, which no example shows
    assert writers.uses[position[1], alice] == 1 and writers.uses[position[3], alice] == 0
    carol = int(writers.of_example[list(examples.image_id).index(600)])
    assert writers.uses[position[2], carol] == 1 and writers.publishes[:, carol].nnz == 0  # a LoRA's maker
    near = np.array([[list(examples.image_id).index(100), list(examples.image_id).index(600)]])
    uses, publishes = writers.votes(near, np.array([[0.75, 0.25]], dtype=np.float32))
    assert uses[0, position[1]] == pytest.approx(0.75) and uses[0, position[2]] == pytest.approx(0.25)
    assert publishes[0, position[3]] == pytest.approx(0.75)
    # training features: a prompt's own fold is out of the writers' uses
    fold = int(examples.fold[near[0, 0]])
    mine = (examples.fold == fold) & (writers.of_example == alice)
    others = (examples.fold != fold) & (writers.of_example == alice)
    used = writers.votes(near[:, :1], np.ones((1, 1), dtype=np.float32), np.array([fold]))[0]
    assert mine.any() and used[0, position[1]] == pytest.approx(1.0 if others.any() else 0.0)
    assert len(writers.fold_uses) == FOLDS
    # a prompt in Alice's words points at her through her centroid, without any neighbour
    uses, publishes, best = writers.nearest(prompts.transform(["photo of a castle, highly detailed"]), 1)
    assert uses[0, position[1]] == pytest.approx(1.0) and publishes[0, position[3]] == pytest.approx(1.0)
    assert 0 < best[0] <= 1
    held_out = writers.nearest(prompts.transform(["photo of a castle"]), 1, np.array([fold]))[0]
    assert held_out.shape == uses.shape
