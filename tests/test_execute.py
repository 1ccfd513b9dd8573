"""Generator payloads: every sampler maps, ComfyUI links point at real nodes, clip skip is translated."""

from __future__ import annotations

import pytest

from diffagent.execute import to_a1111, to_comfyui, to_diffusers
from diffagent.execute.payloads import _COMFY_SAMPLERS, _DIFFUSERS_SCHEDULERS, _split_sampler
from diffagent.schema import KNOWN_SAMPLERS, APICall


def _call(**overrides: object) -> APICall:
    data = {
        "checkpoint": {
            "model_id": 4201,
            "version_id": 105674,
            "name": "Realistic Vision",
            "base_model": "SD 1.5",
        },
        "loras": [
            {"model_id": 1, "version_id": 11, "name": "styleA", "weight": 0.7, "trigger_words": ["sty"]},
            {"model_id": 2, "version_id": 22, "name": "detailB", "weight": 0.35, "trigger_words": []},
        ],
        "prompt": "sty, a castle",
        "negative_prompt": "lowres",
        "sampler": "DPM++ 2M Karras",
        "steps": 25,
        "cfg_scale": 7.0,
        "width": 512,
        "height": 768,
        "clip_skip": 2,
        "seed": -1,
    }
    data.update(overrides)
    return APICall.model_validate(data)


@pytest.mark.parametrize("sampler", KNOWN_SAMPLERS)
def test_every_known_sampler_maps_to_each_generator(sampler: str) -> None:
    name, schedule = _split_sampler(sampler)
    assert name in _COMFY_SAMPLERS and name in _DIFFUSERS_SCHEDULERS
    assert schedule in {"normal", "karras", "exponential", "sgm_uniform"}


def test_a1111_payload_carries_loras_as_tags_named_by_file() -> None:
    body = to_a1111(_call(), {11: "style_a_v2.safetensors", 105674: "realisticVision_v30.safetensors"})
    assert body["prompt"] == "sty, a castle <lora:style_a_v2:0.7> <lora:detailB:0.35>"
    assert body["override_settings"]["sd_model_checkpoint"] == "realisticVision_v30.safetensors"
    body = to_a1111(_call())
    assert body["sampler_name"] == "DPM++ 2M Karras"
    assert body["override_settings"] == {
        "sd_model_checkpoint": "Realistic_Vision.safetensors",
        "CLIP_stop_at_last_layers": 2,
    }


def test_comfyui_graph_links_resolve_and_chain_loras() -> None:
    graph = to_comfyui(_call())
    for node in graph.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in graph, f"dangling link {value}"
    sampler = graph["6"]["inputs"]
    assert (sampler["sampler_name"], sampler["scheduler"], sampler["seed"]) == ("dpmpp_2m", "karras", 0)
    assert graph["11"]["inputs"]["model"] == ["10", 0]  # second LoRA loads on top of the first
    assert sampler["model"] == ["11", 0]
    assert graph["2"]["inputs"]["stop_at_clip_layer"] == -2


def test_diffusers_arguments() -> None:
    spec = to_diffusers(_call(sampler="DPM++ 2M SDE Karras", clip_skip=1, seed=7))
    assert spec["pipeline"] == "StableDiffusionPipeline"
    assert spec["scheduler"] == {
        "class": "DPMSolverMultistepScheduler",
        "options": {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    }
    assert spec["call"]["clip_skip"] is None and spec["seed"] == 7
    assert [lora["weight"] for lora in spec["loras"]] == [0.7, 0.35]
    xl = to_diffusers(_call(checkpoint={"model_id": 1, "version_id": 2, "name": "x", "base_model": "Pony"}))
    assert xl["pipeline"] == "StableDiffusionXLPipeline" and xl["call"]["clip_skip"] == 1


def test_primary_file_names_come_from_the_store() -> None:
    from diffagent.catalog import Store

    store = Store()
    files = [
        {"name": "extra.vae.pt", "primary": False, "hashes": {}},
        {"name": "main.safetensors", "primary": True, "hashes": {}},
    ]
    store.upsert_model(
        {"id": 1, "name": "m", "type": "Checkpoint", "modelVersions": [{"id": 5, "files": files}]}
    )
    assert store.primary_files([5, 6]) == {5: "main.safetensors"}
