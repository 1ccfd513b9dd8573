"""DABench construction: cleaning, resolution by hash and name, drop reasons, leak-free splits, novelty."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import REAL_DUMP, needs_dump
from diffagent.agents.default.params import ParamStats
from diffagent.bench import build_bench, ensure_bench, load_pairs
from diffagent.bench.build import BenchReport, novel_flags
from diffagent.bench.text import NEAR_DUPLICATE_JACCARD, clean_prompt, group_key, lora_tags, shingles
from diffagent.catalog import MADE_WITH, CatalogFilter, Store, made_with_sql
from diffagent.reward.proxy import ProxyReward


def _file(name: str, autov2: str, version_id: int) -> dict:
    return {
        "name": name,
        "id": version_id * 10,
        "type": "Model",
        "primary": True,
        "hashes": {"AutoV2": autov2, "SHA256": autov2 + "0" * 54},
        "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
        "metadata": {"format": "SafeTensor", "fp": "fp16"},
    }


def _model(model_id: int, kind: str, base: str, file_name: str, autov2: str, images: list[dict]) -> dict:
    version_id = model_id * 100
    return {
        "id": model_id,
        "name": f"{kind} {model_id}",
        "type": kind,
        "nsfw": False,
        "tags": ["test"],
        "stats": {"downloadCount": model_id},
        "modelVersions": [
            {
                "id": version_id,
                "name": "v1",
                "baseModel": base,
                "trainedWords": [f"trig{model_id}"],
                "files": [_file(file_name, autov2, version_id)],
                "images": images,
            }
        ],
    }


def _image(image_id: int, prompt: str, model_hash: str | None = "AAAAAAAAAA", **meta: object) -> dict:
    base = {
        "prompt": prompt,
        "negativePrompt": "lowres",
        "sampler": "DPM++ 2M Karras",
        "steps": 25,
        "cfgScale": "7",
        "seed": 42,
        "Size": "512x768",
        "Clip skip": "2",
    }
    if model_hash:
        base["Model hash"] = model_hash
    base.update(meta)
    return {
        "id": image_id,
        "nsfw": "None",
        "width": 1024,
        "height": 1536,
        "url": f"u{image_id}",
        "meta": base,
    }


@pytest.fixture
def tiny_store() -> Store:
    store = Store()
    checkpoint = _model(
        1,
        "Checkpoint",
        "SD 1.5",
        "realmix.safetensors",
        "AAAAAAAAAA",
        [
            _image(11, "a castle on a hill, <lora:styleA:0.7> sunset"),
            _image(12, "portrait of a knight", sampler="DPM++ 2M Karras MOD"),
            _image(13, "a cat <lora:unknownlora:1>"),
            _image(14, "a dog", model_hash="FFFFFFFFFF"),
            _image(15, "a cow", steps=None),
            _image(16, "  <lora:styleA:0.5>  "),
            _image(17, "a ship at sea", model_hash=None),
            _image(18, "xl style <lora:xlstyle:0.8>"),
            {**_image(19, "soft image"), "nsfw": "Soft"},
        ],
    )
    lora = _model(2, "LORA", "SD 1.5", "styleA.safetensors", "BBBBBBBBBB", [_image(21, "on the lora page")])
    xl_lora = _model(3, "LORA", "SDXL 1.0", "xlstyle.safetensors", "CCCCCCCCCC", [])
    for record in (checkpoint, lora, xl_lora):
        store.upsert_model(record)
    return store


def test_clean_prompt_removes_resource_tags_and_stray_commas() -> None:
    text = "a girl, <lora:foo_v2:0.8>, <lyco:bar:1> ,  <hypernet:baz:0.3> red   dress"
    assert clean_prompt(text) == "a girl, red dress"
    assert lora_tags("x <lora:foo_v2:0.8> <lora:bar> <LoRA:Baz Qux:1.2:0.5>") == [
        ("foo_v2", 0.8),
        ("bar", None),
        ("Baz Qux", 1.2),
    ]


def test_group_key_and_shingles() -> None:
    assert group_key("A Cat, (sitting)!") == group_key("a cat sitting")
    assert shingles("a cat sat") == {"a cat", "cat sat"}
    assert shingles("cat") == {"cat"}


def test_build_resolves_and_drops_by_reason(tiny_store: Store, tmp_path) -> None:
    report = build_bench(tiny_store, tmp_path)
    pairs = {
        p.source.image_id: p
        for split in ("train", "val", "test")
        for p in load_pairs(tmp_path / f"{split}.jsonl")
    }
    assert set(pairs) == {11, 17, 21}
    castle = pairs[11]
    assert castle.instruction == "a castle on a hill, sunset"
    assert castle.api.checkpoint.model_id == 1 and castle.api.checkpoint.version_id == 100
    assert [(lo.model_id, lo.weight, lo.trigger_words) for lo in castle.api.loras] == [(2, 0.7, ["trig2"])]
    assert (castle.api.cfg_scale, castle.api.clip_skip, castle.api.width, castle.api.height) == (
        7.0,
        2,
        512,
        768,
    )
    assert pairs[17].api.checkpoint.model_id == 1  # no hash, but the page is the checkpoint itself
    assert pairs[21].api.checkpoint.model_id == 1  # a LoRA page's image resolves through its hash
    assert report.dropped == {
        "unknown_sampler": 1,
        "unresolved_lora": 1,
        "unresolved_checkpoint": 1,
        "missing_params": 1,
        "empty_prompt": 1,
        "incompatible_lora": 1,
    }
    assert report.images == 9  # the Soft image is filtered out before counting


def test_build_is_byte_identical_and_ensure_reuses(tiny_store: Store, tmp_path) -> None:
    build_bench(tiny_store, tmp_path / "a")
    build_bench(tiny_store, tmp_path / "b")
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "card.md", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    out = ensure_bench(tiny_store, tmp_path / "a")
    stamp = (out / "train.jsonl").stat().st_mtime_ns
    assert ensure_bench(tiny_store, out) == out and (out / "train.jsonl").stat().st_mtime_ns == stamp
    changed = copy.deepcopy(
        json.loads(tiny_store.conn.execute("SELECT raw FROM models WHERE id=3").fetchone()[0])
    )
    changed["modelVersions"] = []
    tiny_store.upsert_model(changed)  # a catalogue change makes the bench stale
    ensure_bench(tiny_store, out)
    assert json.loads((out / "manifest.json").read_text())["catalog_revision"] == tiny_store.revision


def test_novel_flags_threshold() -> None:
    train = ["a red car on a road at night", "portrait of an old man"]
    test = ["a red car on a road at dawn", "a blue boat on a lake", "portrait of an old man smiling"]
    # bigrams: 6 shared of 8 -> 0.75 (not novel); none shared (novel); 4 of 5 -> 0.8 (not novel)
    assert novel_flags(test, train) == [False, True, False]


def whole_dump(test):  # type: ignore[no-untyped-def]
    """Slow on the whole real dump (its DABench takes tens of seconds); the fixture's takes under one."""
    return pytest.mark.slow(test) if REAL_DUMP else test


@pytest.fixture(scope="module")
def whole_bench(full_store: Store, tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchReport, dict]:
    """DABench of the whole dump the session loaded (the shared one, or the fixture without it)."""
    folder = tmp_path_factory.mktemp("whole-bench")
    report = build_bench(full_store, folder)
    return report, {s: load_pairs(folder / f"{s}.jsonl") for s in ("train", "val", "test")}


@whole_dump
def test_bench_of_the_whole_dump_is_leak_free(whole_bench: tuple[BenchReport, dict]) -> None:
    report, splits = whole_bench
    assert {s: len(pairs) for s, pairs in splits.items()} == report.pairs
    assert all(splits.values())  # every split holds pairs
    keys = {s: {group_key(p.instruction) for p in pairs} for s, pairs in splits.items()}
    assert (
        not keys["train"] & keys["val"]
        and not keys["train"] & keys["test"]
        and not keys["val"] & keys["test"]
    )
    assert report.novel == sum(p.novel for p in splits["test"]) and 0 < report.novel < len(splits["test"])
    train_shingles = [shingles(p.instruction) for p in splits["train"]]
    for pair in splits["test"][:40]:  # the definition against a brute-force scan, novel or not
        mine = shingles(pair.instruction)
        best = max(len(mine & t) / len(mine | t) for t in train_shingles if mine | t)
        assert (best < NEAR_DUPLICATE_JACCARD) == pair.novel, pair.instruction


@needs_dump
@pytest.mark.slow
def test_real_bench_sizes(whole_bench: tuple[BenchReport, dict]) -> None:
    """What only the real dump shows: tens of thousands of pairs, a test split about half novel."""
    report, _ = whole_bench
    assert report.pairs["train"] > 25_000 and report.pairs["test"] > 3_000
    assert 0.3 < report.novel / report.pairs["test"] < 0.8


def test_one_rule_names_the_checkpoint_of_every_image(tiny_store: Store) -> None:
    """DABench, the agent's statistics and the proxy reward ask one rule (made_with_sql) which checkpoint
    made an image: Civitai's record first, then the hash (AutoV3's 12 digits, else AutoV2, the first
    stored file of a shared hash winning), then the checkpoint page."""
    twin = _model(4, "Checkpoint", "SD 1.5", "twin.safetensors", "AAAAAAAAAA", [])
    twin["modelVersions"][0]["files"][0]["hashes"]["AutoV3"] = "DDDDDDDDDDDD"
    twin["modelVersions"][0]["images"] = [
        _image(41, "recorded", civitaiResources=[{"type": "checkpoint", "modelVersionId": 100}]),
        _image(42, "a shared hash"),
        _image(43, "by autov3", model_hash="DDDDDDDDDDDD"),
    ]
    bare = _model(5, "LORA", "SD 1.5", "bare.safetensors", "EEEEEEEEEE", [_image(51, "x", model_hash=None)])
    for record in (twin, bare):
        tiny_store.upsert_model(record)

    def made(flt: CatalogFilter | None = None) -> dict[int, tuple[int | None, str, int]]:
        sql, params = made_with_sql(flt)
        rows = tiny_store.conn.execute(
            f"SELECT i.id, made.version_id, made.how, made.page_version"
            f" FROM images i JOIN ({sql}) made ON made.row = i.rowid",
            params,
        )
        return {image: (version, how, page) for image, version, how, page in rows}

    rule = made()
    assert rule[41] == (100, "resources", 400)  # the record wins over the page it hangs on
    assert rule[42] == (100, "hash", 400)  # two files share the hash: the first stored wins
    assert rule[43] == (400, "hash", 400)
    assert rule[11] == (100, "hash", 100) and rule[21] == (100, "hash", 200)
    assert rule[14] == (None, "unresolved", 100)  # a hash the catalogue does not know: never the page
    assert rule[17] == (100, "page", 100)  # no hash, no record: the checkpoint page's label
    assert rule[51] == (None, "none", 500)  # nothing says, and the page is a LoRA's
    assert {how for _, how, _ in rule.values()} <= {*MADE_WITH, "unresolved", "none"}
    # resolved within a filter: the LoRA versions alone know no checkpoint hash
    assert made(CatalogFilter(types=("LORA",), require_file=False))[11] == (None, "unresolved", 100)
    # the agent's statistics and the proxy reward count for version 400 its one image the rule gives it
    # (43), not the two that hang on its page (41, 42)
    assert ParamStats(tiny_store)._support[("version", 400)] == 1
    assert sum(ProxyReward(tiny_store)._by_version[400].sampler.values()) == 1
