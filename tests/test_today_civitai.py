"""Today's Civitai end to end: a loopback server of the 2026 API (models, images, by-hash) serving the
fixture of ``tests/fixtures/civitai-2026`` with faults, crawled, benched, ranked and answered per family."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from civitai_2026 import FIXTURE, TOKEN, Civitai2026
from diffagent.catalog import (
    CrawlQuery,
    RetryPolicy,
    Store,
    family,
    parse_meta,
    settle,
    size_ok,
)
from diffagent.cli import app
from diffagent.schema import APICall, Checkpoint

FAST = RetryPolicy(max_retries=6, base_delay=0.001, max_delay=0.01)
runner = CliRunner()


@pytest.fixture
def civitai() -> Iterator[Civitai2026]:
    server = Civitai2026()
    yield server
    server.close()


def _fixture_model(name: str) -> dict:
    return next(m for m in json.loads((FIXTURE / "models.json").read_text()) if m["name"] == name)


# -- parsing today's shapes ------------------------------------------------------------------------------


def test_meta_of_every_shape_names_its_resources() -> None:
    civitai = parse_meta(
        {"prompt": "a", "cfgScale": 3.5, "steps": 28, "sampler": "Euler",
         "civitaiResources": [{"type": "checkpoint", "modelVersionId": 691639},
                              {"type": "lora", "weight": 0.8, "modelVersionId": 735063},
                              {"type": "embed", "modelVersionId": "oops"}]}
    )  # fmt: skip
    assert [(r.type, r.version_id, r.weight) for r in civitai.resources] == [
        ("model", 691639, None),
        ("lora", 735063, 0.8),
    ]
    comfy = parse_meta(
        {"prompt": "b",
         "additionalResources": [{"name": "urn:air:sdxl:lora:civitai:12@345", "strength": 0.6}],
         "hashes": {"model": "abcdef0123", "lora:inkwash": "0123456789ab"}}
    )  # fmt: skip
    assert comfy.model_hash == "ABCDEF0123"
    assert [(r.type, r.version_id, r.hash) for r in comfy.resources] == [
        ("lora", 345, None),
        ("lora", None, "0123456789AB"),
    ]
    nested = parse_meta({"id": 5, "meta": {"prompt": "c", "Clip skip": "2", "Size": "832x1216"}})
    assert (nested.prompt, nested.clip_skip, nested.width) == ("c", 2, 832)


def test_settle_applies_each_familys_rules() -> None:
    base = {"prompt": "a cat", "negative_prompt": "ugly", "sampler": "Euler", "steps": 28, "cfg_scale": 3.5,
            "width": 512, "height": 768, "clip_skip": 1}  # fmt: skip
    flux = settle("Flux.1 D", "Flux dev", base)
    assert flux["cfg_scale"] <= 3.5 and flux["guidance"] == 3.5 and flux["scheduler"] == "simple"
    assert flux["negative_prompt"] == "" and 0.8 <= flux["width"] * flux["height"] / 1e6 <= 1.3
    schnell = settle("Flux.1 S", "Flux schnell", base)
    assert schnell["guidance"] is None and schnell["cfg_scale"] == 1.0
    assert settle("SD 1.5", "x", {**base, "steps": 8, "cfg_scale": 1.5})["steps"] == 8  # the evidence decides
    pony = settle("Pony", "Pony Diffusion V6 XL", base)
    assert pony["clip_skip"] == 2 and pony["prompt"].startswith("score_9, score_8_up, score_7_up, a cat")
    kept = settle("Pony", "x", {**base, "prompt": "1girl, score_9, smiling"})
    assert kept["prompt"] == "1girl, score_9, smiling"  # the user's own score tags stay as written
    assert settle("Illustrious", "x", base)["clip_skip"] == 2
    sdxl = settle("SDXL 1.0", "Juggernaut XL", base)
    assert size_ok("SDXL 1.0", sdxl["width"], sdxl["height"]) and sdxl["guidance"] is None
    assert settle("SD 1.5", "x", {**base, "clip_skip": 2})["clip_skip"] == 2  # SD 1.5: the evidence decides
    assert settle("Other", "x", base) == {**base, "guidance": None, "scheduler": None}
    assert family("Pony V7") != family("Pony")  # Pony V7 is AuraFlow: SDXL add-ons do not run on it


def test_guidance_and_scheduler_are_left_out_of_the_json_when_absent() -> None:
    call = APICall(
        checkpoint=Checkpoint(model_id=1, version_id=2, name="n", base_model="SDXL 1.0"),
        prompt="p", sampler="Euler", steps=20, cfg_scale=6, width=1024, height=1024,
    )  # fmt: skip
    assert "guidance" not in call.model_dump() and "scheduler" not in json.loads(call.model_dump_json())
    flux = call.model_copy(update={"guidance": 3.5, "scheduler": "simple"})
    assert json.loads(flux.model_dump_json())["guidance"] == 3.5
    assert APICall.model_validate(json.loads(flux.model_dump_json())) == flux


# -- the crawl ------------------------------------------------------------------------------------------


def test_crawl_of_both_endpoints_survives_faults_and_resumes(civitai: Civitai2026) -> None:
    from diffagent.catalog import crawl

    civitai.faults["models"] = ["429", "503", "drop"]
    civitai.faults["images"] = ["404", "503", "429", "drop"]
    waits: list[float] = []
    store = Store()
    query = CrawlQuery(page_size=10)

    def stop_after_first_page(done: int, limit: int | None) -> None:
        if done == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        crawl(store, query, base_url=civitai.url, token=TOKEN, retry=FAST, sleep=waits.append,
              progress=stop_after_first_page)  # fmt: skip
    report = crawl(store, query, base_url=civitai.url, token=TOKEN, retry=FAST, sleep=waits.append)
    assert report.resumed and report.finished
    assert sum(w >= 3 for w in waits) == 2  # both 429s waited their Retry-After

    asked = [p["modelVersionId"][0] for p in civitai.requests("images")]
    successful = set(asked)
    without_meta = {  # versions with files whose model page sends no meta: all but SD 1.5's
        str(v["id"]) for m in civitai.models for v in m["modelVersions"]
        if v["files"] and v["baseModel"] != "SD 1.5" and not (m["nsfwLevel"] & ~3)
    }  # fmt: skip
    assert successful == without_meta and len(asked) == len(without_meta) + 3  # each once, plus 3 retries
    gone = store.conn.execute("SELECT version_id FROM image_fetches WHERE images = 0").fetchall()
    assert [row[0] for row in gone] == [int(asked[0])]  # the 404: no images, not asked again
    assert all(p["withMeta"] == ["true"] and p["browsingLevel"] == ["1"] for p in civitai.requests("images"))
    assert all(p["nsfw"] == ["false"] for p in civitai.requests("models"))

    explicit = _fixture_model("Explicit Pony Mix")
    counts = store.stats()
    assert counts["models"] == 30 and store.version(explicit["modelVersions"][0]["id"]) is None
    # every version without meta on its page was asked once; SD 1.5 pages carry meta and were not
    sd15 = {str(v["id"]) for m in civitai.models for v in m["modelVersions"] if v["baseModel"] == "SD 1.5"}
    assert successful and not successful & sd15
    archived = next(
        v for v in _fixture_model("Juggernaut XL")["modelVersions"] if v.get("mode") == "Archived"
    )
    assert str(archived["id"]) not in successful and store.version(archived["id"]) is not None
    # PG-13 images of meta-less pages never arrived with meta; the nested legacy meta was unwrapped
    soft = store.conn.execute(
        "SELECT COUNT(*) FROM images i JOIN versions v ON v.id = i.version_id"
        " WHERE i.nsfw = 'Soft' AND i.prompt IS NOT NULL AND v.base_model != 'SD 1.5'"
    ).fetchone()[0]
    assert soft == 0
    realvis = _fixture_model("RealVisXL V5")["modelVersions"][0]["id"]
    first = civitai.images[str(realvis)][0]["id"]
    row = store.conn.execute("SELECT prompt, sampler FROM images WHERE id = ?", (first,)).fetchone()
    assert row["prompt"] and row["sampler"] == "DPM++ 2M Karras"
    # every hash kind finds its version; Flux images resolve their checkpoint by version id
    flux = _fixture_model("Jib Mix Flux")["modelVersions"][0]
    for kind, digest in flux["files"][0]["hashes"].items():
        found = store.version_by_hash(digest.lower())
        assert found is not None and found.version_id == flux["id"], kind
    resolved = store.conn.execute(
        "SELECT COUNT(*) FROM images WHERE checkpoint_version = ?", (flux["id"],)
    ).fetchone()[0]
    assert resolved >= 10

    before = len(civitai.log)
    again = crawl(store, query, base_url=civitai.url, token=TOKEN, retry=FAST, sleep=waits.append)
    assert again.changed == 0 and again.image_requests == 0 and len(civitai.log) - before == again.pages


# -- crawl -> bench -> ranker -> select -> payloads, per family ------------------------------------------

FAMILY_PROMPTS = {
    "SD 1.5": "portrait of an old fisherman, photo",
    "SDXL 1.0": "a mountain lake at sunrise, ultra detailed photograph <lora:PixelArt:0.8>",
    "Pony": "1girl, fox ears, forest",
    "Illustrious": "1girl, silver hair, classroom",
    "Flux.1 D": "a neon sign that says OPEN in a rainy alley",
}


@pytest.fixture(scope="module")
def crawled_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A DIFFAGENT_HOME filled by ``catalog sync`` from the loopback API (one fault of each kind), with
    DABench built and the ranker trained by the CLI."""
    server = Civitai2026(retry_after="1")
    server.faults["models"] = ["429"]
    server.faults["images"] = ["503", "drop"]
    home = tmp_path_factory.mktemp("civitai-2026-home")
    env = {"DIFFAGENT_HOME": str(home), "DIFFAGENT_CIVITAI_URL": server.url, "CIVITAI_API_TOKEN": TOKEN}
    try:
        steps = [
            ["catalog", "sync", "--base-models", "SD 1.5,SDXL 1.0,Pony,Illustrious,Flux.1 D", "--limit", "0"],
            ["bench", "build"],
            ["train", "ranker"],
        ]
        for args in steps:
            result = runner.invoke(app, args, env=env)
            assert result.exit_code == 0, (args, result.output)
            assert TOKEN not in result.output
        yield home, env
    finally:
        server.close()


def test_sync_bench_and_ranker_see_every_family(crawled_home: tuple[Path, dict[str, str]]) -> None:
    home, _ = crawled_home
    manifest = json.loads((home / "bench" / "manifest.json").read_text())
    assert manifest["dropped"].get("incompatible_lora") == 1  # the SDXL image made with an SD 1.5 LoRA
    pairs = [json.loads(line) for split in ("train", "val", "test")
             for line in (home / "bench" / f"{split}.jsonl").read_text().splitlines()]  # fmt: skip
    bases = {p["api"]["checkpoint"]["base_model"] for p in pairs}
    assert bases == set(FAMILY_PROMPTS)
    with_loras = {p["api"]["checkpoint"]["base_model"] for p in pairs if p["api"]["loras"]}
    assert with_loras == set(FAMILY_PROMPTS)  # LoRAs resolved by AutoV3, AIR URN and version id alike
    flux = [p["api"] for p in pairs if p["api"]["checkpoint"]["base_model"] == "Flux.1 D"]
    assert all((a["cfg_scale"], a["guidance"]) == (1.0, 3.5) for a in flux)  # cfgScale 3.5 was the guidance
    assert sum("guidance" in p["api"] for p in pairs) == len(flux)


@pytest.mark.parametrize("base", sorted(FAMILY_PROMPTS))
def test_select_per_family_follows_the_family(crawled_home: tuple[Path, dict[str, str]], base: str) -> None:
    home, env = crawled_home
    result = runner.invoke(app, ["select", FAMILY_PROMPTS[base], "--base-model", base, "--json"], env=env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    api = answer["api"]
    fam = family(base)
    assert family(api["checkpoint"]["base_model"]) == fam
    assert all(family(alt["checkpoint"]["base_model"]) == fam for alt in answer["alternatives"])
    with Store(home / "catalog.sqlite") as store:
        for lora in api["loras"]:
            lora_base = store.version(lora["version_id"]).base_model  # type: ignore[union-attr]
            assert family(lora_base) != "SD1" or fam == "SD1", "an SD 1.5 LoRA on an SDXL-family checkpoint"
        assert store.version(api["checkpoint"]["version_id"]).model_name != "Explicit Pony Mix"  # type: ignore[union-attr]
    megapixels = api["width"] * api["height"] / 1e6
    if fam == "Flux1":
        assert api["cfg_scale"] <= 3.5 and api["guidance"] == 3.5 and api["negative_prompt"] == ""
        assert 0.8 <= megapixels <= 1.3 and api["scheduler"] == "simple"
    else:
        assert "guidance" not in api
    if fam in ("SDXL", "Pony", "Illustrious"):
        assert 0.8 <= megapixels <= 1.6, (api["width"], api["height"])
    if fam in ("Pony", "Illustrious"):
        assert api["clip_skip"] == 2
    if fam == "Pony":
        assert "score_9" in api["prompt"]
    if fam == "SD1":
        assert megapixels < 0.5
    for payload in ("a1111", "comfyui", "diffusers"):
        args = ["select", FAMILY_PROMPTS[base], "--base-model", base, "--format", payload]
        shown = runner.invoke(app, args, env=env)
        assert shown.exit_code == 0, (payload, shown.output)
        assert isinstance(json.loads(shown.stdout), dict)


def test_base_model_accepts_a_family_name_and_refuses_an_absent_one(
    crawled_home: tuple[Path, dict[str, str]],
) -> None:
    _, env = crawled_home
    result = runner.invoke(app, ["select", "a cat", "--base-model", "Flux1", "--json"], env=env)
    assert (
        result.exit_code == 0
        and family(json.loads(result.stdout)["api"]["checkpoint"]["base_model"]) == "Flux1"
    )
    absent = runner.invoke(app, ["select", "a cat", "--base-model", "SD 3.5", "--json"], env=env)
    assert absent.exit_code == 2 and absent.output.strip().count("\n") == 0 and "SD 3.5" in absent.output


def test_sdxl_lora_on_pony_is_allowed_but_ranked_behind_pony_lora(
    crawled_home: tuple[Path, dict[str, str]],
) -> None:
    _, env = crawled_home
    prompt = "1girl, beach <lora:FilmPhotographyXL:0.8> <lora:ExpressiveH:0.8>"  # the SDXL LoRA named first
    result = runner.invoke(app, ["select", prompt, "--base-model", "Pony", "--json"], env=env)
    assert result.exit_code == 0, result.output
    names = [lora["name"] for lora in json.loads(result.stdout)["api"]["loras"]]
    assert names == ["Expressive H", "Film Photography XL"]


def test_comfyui_payload_for_flux_carries_flux_guidance(crawled_home: tuple[Path, dict[str, str]]) -> None:
    _, env = crawled_home
    shown = runner.invoke(app, ["select", "a paper boat", "--base-model", "Flux.1 D", "--format", "comfyui"],
                          env=env)  # fmt: skip
    body = json.loads(shown.stdout)
    nodes = {node["class_type"]: node for node in body["prompt"].values()}
    assert nodes["FluxGuidance"]["inputs"]["guidance"] == 3.5 and nodes["KSampler"]["inputs"]["cfg"] == 1
    assert {"UNETLoader", "DualCLIPLoader", "VAELoader", "EmptySD3LatentImage"} <= set(nodes)
    assert "CheckpointLoaderSimple" not in nodes and "CLIPSetLastLayer" not in nodes
    assert nodes["KSampler"]["inputs"]["scheduler"] == "simple"
    forge = runner.invoke(app, ["select", "a paper boat", "--base-model", "Flux.1 D", "--format", "a1111"],
                          env=env)  # fmt: skip
    body = json.loads(forge.stdout)
    assert (body["distilled_cfg_scale"], body["cfg_scale"], body["scheduler"]) == (3.5, 1.0, "Simple")
    assert body["negative_prompt"] == ""


# -- catalog lookup ---------------------------------------------------------------------------------------


def test_lookup_is_local_first_then_by_hash_online(
    crawled_home: tuple[Path, dict[str, str]], civitai: Civitai2026
) -> None:
    _, env = crawled_home
    env = {**env, "DIFFAGENT_CIVITAI_URL": civitai.url}
    pony = _fixture_model("Pony Diffusion V6 XL")["modelVersions"][0]
    local = runner.invoke(app, ["catalog", "lookup", pony["files"][0]["hashes"]["AutoV3"], "--json"], env=env)
    assert local.exit_code == 0 and json.loads(local.stdout)["source"] == "catalogue"
    assert json.loads(local.stdout)["version_id"] == pony["id"] and not civitai.log
    explicit = _fixture_model("Explicit Pony Mix")["modelVersions"][0]  # not crawled: Civitai knows it
    online = runner.invoke(
        app, ["catalog", "lookup", explicit["files"][0]["hashes"]["SHA256"], "--json"], env=env
    )
    assert online.exit_code == 0, online.output
    found = json.loads(online.stdout)
    assert (found["source"], found["version_id"], found["family"]) == ("civitai", explicit["id"], "Pony")
    assert civitai.log[-1][2] == f"Bearer {TOKEN}" and TOKEN not in online.output
    missing = runner.invoke(app, ["catalog", "lookup", "0123456789"], env=env)
    assert missing.exit_code == 1 and missing.output.strip().count("\n") == 0
    offline = runner.invoke(app, ["catalog", "lookup", "0123456789", "--offline"], env=env)
    assert offline.exit_code == 1 and len(civitai.log) == 2
    refused = runner.invoke(
        app, ["catalog", "lookup", "0123456789"], env={**env, "CIVITAI_API_TOKEN": "wrong"}
    )
    assert refused.exit_code == 1 and "CIVITAI_API_TOKEN" in refused.output and "wrong" not in refused.output


def test_service_takes_base_models_like_the_cli(
    crawled_home: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from diffagent.service import create_app

    home, _ = crawled_home
    monkeypatch.setenv("DIFFAGENT_HOME", str(home))
    with Store(home / "catalog.sqlite") as store:
        client = TestClient(create_app(store))
        flux = client.post("/select", json={"prompt": "a paper boat", "base_models": ["Flux.1 D"]})
        assert flux.status_code == 200, flux.text
        api = flux.json()["api"]
        assert api["checkpoint"]["base_model"] == "Flux.1 D" and api["guidance"] == 3.5
        batch = client.post(
            "/select/batch", json={"items": [{"id": 1, "prompt": "1girl"}], "base_models": ["Pony"]}
        )
        assert batch.json()["results"][0]["api"]["clip_skip"] == 2
        assert client.post("/select", json={"prompt": "x", "base_models": ["SD 3.5"]}).status_code == 422
        other = client.post("/select", json={"prompt": "x", "agent": "tfidf", "base_models": ["Pony"]})
        assert other.status_code == 200 and "not applied" in " ".join(other.json()["notes"])


def test_a_store_from_an_older_release_gains_the_new_hash_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as conn:  # as an older release left it: no AutoV1/V3/CRC32/BLAKE3 columns
        for column in ("autov1", "autov3", "crc32", "blake3"):
            conn.execute(f"DROP INDEX files_{column}")
            conn.execute(f"ALTER TABLE files DROP COLUMN {column}")
        conn.execute("ALTER TABLE images DROP COLUMN checkpoint_version")
    model = _fixture_model("Flux Realism LoRA")
    with Store(path) as store:
        store.upsert_model(model)
        digest = model["modelVersions"][0]["files"][0]["hashes"]["AutoV3"]
        assert store.version_by_hash(digest).version_id == model["modelVersions"][0]["id"]  # type: ignore[union-attr]


def test_bench_build_takes_a_family_name(crawled_home: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _, env = crawled_home
    result = runner.invoke(app, ["bench", "build", "--base-model", "Flux1", "--out", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    pairs = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert pairs and {family(p["api"]["checkpoint"]["base_model"]) for p in pairs} == {"Flux1"}
