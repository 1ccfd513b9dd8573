"""Textual-inversion embeddings: a negative keeps an embedding name only where the catalogue holds that
embedding for the checkpoint's family and the agent may name it; the call then lists it."""

from __future__ import annotations

import json
from typing import Any

from diffagent.agents.default.embeddings import CatalogEmbeddings, embedding_words
from diffagent.agents.default.params import assemble_call, consensus_negative
from diffagent.catalog import CatalogFilter, Store, VersionRef, validate_call
from diffagent.execute import to_comfyui


def _model(model_id: int, name: str, kind: str, base: str, words: list[str], **extra: Any) -> dict:
    version = model_id * 10
    return {
        "id": model_id,
        "name": name,
        "type": kind,
        **extra,
        "modelVersions": [
            {
                "id": version,
                "name": "v1",
                "baseModel": base,
                "trainedWords": words,
                "files": [
                    {
                        "name": f"{name.replace(' ', '')}.safetensors",
                        "type": "Model",
                        "primary": True,
                        "hashes": {"SHA256": f"{model_id:064x}", "AutoV2": f"{model_id:010x}"},
                        "downloadUrl": f"https://civitai.com/api/download/models/{version}",
                    }
                ],
            }
        ],
    }


def _store() -> Store:
    store = Store()
    store.upsert_model(_model(1, "Real Vision", "Checkpoint", "SD 1.5", []))
    store.upsert_model(_model(2, "Grand XL", "Checkpoint", "SDXL 1.0", []))
    store.upsert_model(_model(3, "EasyNegative", "TextualInversion", "SD 1.5", ["easynegative"]))
    store.upsert_model(_model(4, "negativeXL", "TextualInversion", "SDXL 1.0", ["negativexl_d"]))
    store.upsert_model(_model(5, "Lewd Fixer", "TextualInversion", "SD 1.5", ["lewdfix-neg"], nsfw=True))
    return store


def _ref(store: Store, version_id: int) -> VersionRef:
    ref = store.version(version_id)
    assert ref is not None
    return ref


def test_the_consensus_keeps_only_the_catalogues_embedding_names() -> None:
    negatives = ["easynegative, badhandv4, lowres", "easynegative, badhandv4, lowres, blurry"] * 3
    assert consensus_negative(negatives) == "lowres, blurry"
    known = embedding_words(_store())
    assert {"easynegative", "negativexl_d", "lewdfix-neg"} <= known and "badhandv4" not in known
    assert consensus_negative(negatives, embeddings=known) == "easynegative, lowres, blurry"


def test_an_answer_names_an_embedding_only_for_its_family_and_filter() -> None:
    store = _store()
    safe = CatalogEmbeddings(store, CatalogFilter(types=("Checkpoint",)))
    negative = "easynegative, negativexl_d, lewdfix-neg, badhandv4, lowres"
    kept, found = safe.resolve(negative, "SD 1.5")
    assert kept == "easynegative, lowres" and [e.name for e in found] == ["EasyNegative"]
    assert found[0].trigger_words == ["easynegative"] and found[0].version_id == 30
    assert safe.resolve(negative, "SDXL 1.0") == (
        "negativexl_d, lowres",
        [safe.by_name["negativexl_d"][0].embedding],
    )
    daring = CatalogEmbeddings(store, CatalogFilter(types=("Checkpoint",), allow_nsfw_models=True))
    assert daring.resolve(negative, "SD 1.5")[0] == "easynegative, lewdfix-neg, lowres"
    installed = CatalogEmbeddings(store, CatalogFilter(types=("Checkpoint",), version_ids=frozenset({10})))
    assert installed.resolve(negative, "SD 1.5") == ("lowres", [])
    assert safe.resolve("lowres, blurry", "SD 1.5") == ("lowres, blurry", [])


def test_the_call_lists_its_embeddings_and_generators_load_them() -> None:
    store = _store()
    found = CatalogEmbeddings(store, CatalogFilter(types=("Checkpoint",))).resolve(
        "easynegative, lowres", "SD 1.5"
    )
    params = {
        "negative_prompt": found[0], "embeddings": found[1], "sampler": "DPM++ 2M Karras", "steps": 25,
        "cfg_scale": 7.0, "width": 512, "height": 768, "clip_skip": 1,
    }  # fmt: skip
    call = assemble_call(_ref(store, 10), "a lighthouse", params)
    assert call.model_dump()["embeddings"] == [
        {"model_id": 3, "version_id": 30, "name": "EasyNegative", "trigger_words": ["easynegative"]}
    ]
    assert validate_call(store, call) == []
    assert to_comfyui(call, {30: "EasyNegative.safetensors"})["4"]["inputs"]["text"] == (
        "embedding:EasyNegative, lowres"
    )
    xl = assemble_call(_ref(store, 20), "a lighthouse", params)  # validation catches the wrong family
    assert any("is for SD 1.5" in reason for reason in validate_call(store, xl))


def test_a1111_says_which_embeddings_it_has_not_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from _servers import a1111_handler, serve
    from diffagent.execute import ModelFile
    from diffagent.execute.generate import run_backend
    from diffagent.schema import APICall

    sha = hashlib.sha256(b"ckpt").hexdigest()
    call = APICall.model_validate({
        "checkpoint": {"model_id": 1, "version_id": 10, "name": "Real Vision", "base_model": "SD 1.5"},
        "prompt": "a lighthouse", "negative_prompt": "easynegative, bad-hands-5, lowres",
        "sampler": "Euler a", "steps": 20, "cfg_scale": 7.0, "width": 512, "height": 512,
        "embeddings": [
            {"model_id": 3, "version_id": 30, "name": "EasyNegative", "trigger_words": ["easynegative"]},
            {"model_id": 4, "version_id": 40, "name": "Bad Hands", "trigger_words": ["bad-hands-5"]},
        ],
    })  # fmt: skip
    state = {"models": {"rv.safetensors": sha}, "loras": [], "embeddings": ["EasyNegative"]}
    with serve(a1111_handler(state)) as url:
        (image,) = run_backend(call, "a1111", {10: ModelFile("rv.safetensors", sha256=sha)}, url)
    assert image.notes == (
        "the embedding Bad Hands is not loaded on the server (models/embeddings): its name stays a word",
    )
    assert state["requests"][0]["negative_prompt"] == "easynegative, bad-hands-5, lowres"


def test_a_hostile_embedding_name_never_reaches_a_payload() -> None:
    store = _store()
    store.upsert_model(
        _model(6, "x:1> <lora:evil:1> \x1b[2J", "TextualInversion", "SD 1.5", ["<lora:evil:1>", "ng_deepneg"])
    )
    found = CatalogEmbeddings(store, CatalogFilter(types=("Checkpoint",)))
    kept, listed = found.resolve("ng_deepneg, <lora:evil:1>, lowres", "SD 1.5")
    assert kept == "ng_deepneg, lowres" and len(listed) == 1
    assert "<" not in listed[0].name and "\x1b" not in listed[0].name
    params = {
        "negative_prompt": kept, "embeddings": listed, "sampler": "Euler a", "steps": 20, "cfg_scale": 7.0,
        "width": 512, "height": 512, "clip_skip": 1,
    }  # fmt: skip
    call = assemble_call(_ref(store, 10), "a lighthouse", params)
    assert validate_call(store, call) == []
    graph = to_comfyui(call)
    assert "<lora" not in json.dumps(graph) and "\\u001b" not in json.dumps(graph)
