"""Generator payloads: every sampler maps, ComfyUI links point at real nodes, clip skip is translated,
and no catalogue file name can become a path or generator syntax."""

from __future__ import annotations

from typing import Any

import pytest

from diffagent.execute import (
    FORMATS,
    ModelFile,
    safe_file_name,
    safe_stem,
    to_a1111,
    to_comfyui,
    to_diffusers,
    to_payload,
)
from diffagent.execute._common import SEED_RANGE, VAE_FILE, split_sampler
from diffagent.execute.comfyui import COMFY_SAMPLERS
from diffagent.execute.diffusers import DIFFUSERS_SCHEDULERS, pipeline_config
from diffagent.filenames import written_stem
from diffagent.schema import KNOWN_SAMPLERS, APICall


def _call(**overrides: object) -> APICall:
    data: dict[str, Any] = {
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


HOSTILE = [
    "../../../../etc/passwd",
    "..\\..\\windows\\system32\\x.dll",
    "evil:1> <lora:other",
    "a\x00b\x1b[31mc\n.safetensors",
    "..",
    "/abs/path.ckpt",
    "embedding:x, (y:1.5)",
    "   ",
    "NUL.safetensors",
    "con",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_become_plain_file_names(name: str) -> None:
    clean = safe_file_name(name)
    assert clean and "/" not in clean and "\\" not in clean and ".." not in clean
    assert not any(ch in clean for ch in "<>:\n\x00\x1b") and not clean.startswith(".")
    assert ":" not in safe_stem(name) and ">" not in safe_stem(name)
    assert clean.split(".")[0].upper() not in {"NUL", "CON"}


def test_safe_names_keep_ordinary_names_and_fit_file_systems() -> None:
    assert safe_file_name("realisticVision_v51.safetensors") == "realisticVision_v51.safetensors"
    assert safe_file_name("Café Style (v2).safetensors") == "Café Style (v2).safetensors"
    long = safe_file_name("é" * 300 + ".safetensors")
    assert len(long.encode()) <= 200 and long.endswith(".safetensors")


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_catalogue_file_names_never_reach_a_payload(fmt: str) -> None:
    files = {105674: "../../models/x:y.safetensors", 11: "bad> <lora:z:9.safetensors", 22: "..\\up.pt"}
    text = str(to_payload(_call(), fmt, files))
    assert "../" not in text and "..\\" not in text and "<lora:z" not in text


@pytest.mark.parametrize("sampler", KNOWN_SAMPLERS)
def test_every_known_sampler_maps_to_each_generator(sampler: str) -> None:
    name, schedule = split_sampler(sampler)
    assert name in COMFY_SAMPLERS and name in DIFFUSERS_SCHEDULERS
    assert schedule in {"normal", "karras", "exponential", "sgm_uniform"}


def test_a1111_payload_carries_loras_as_tags_named_by_file_and_splits_the_schedule() -> None:
    body = to_a1111(_call(), {11: "style_a_v2.safetensors", 105674: "realisticVision_v30.safetensors"})
    assert body["prompt"] == "sty, a castle <lora:style_a_v2:0.7> <lora:detailB:0.35>"
    assert body["override_settings"]["sd_model_checkpoint"] == "realisticVision_v30.safetensors"
    assert (body["sampler_name"], body["scheduler"]) == ("DPM++ 2M", "Karras")
    assert "enable_hr" not in body and "sd_vae" not in body["override_settings"]
    assert to_a1111(_call(sampler="Euler a"))["scheduler"] == "Automatic"
    assert to_a1111(_call())["override_settings"] == {
        "sd_model_checkpoint": "Realistic Vision.safetensors",
        "CLIP_stop_at_last_layers": 2,
    }


def test_a1111_sends_hires_fix_and_vae() -> None:
    call = _call(
        hires={"scale": 1.5, "upscaler": "4x-UltraSharp", "denoising_strength": 0.4, "steps": 12},
        vae={"model_id": 4201, "version_id": 105674, "name": "vae-ft-mse-840000-ema-pruned.safetensors"},
    )
    # the VAE shares its version with the checkpoint: the checkpoint's file never stands in for it
    body = to_a1111(call, {105674: "realisticVision_v30.safetensors"})
    assert body["enable_hr"] is True and body["hr_scale"] == 1.5 and body["hr_upscaler"] == "4x-UltraSharp"
    assert (body["denoising_strength"], body["hr_second_pass_steps"]) == (0.4, 12)
    assert body["override_settings"]["sd_vae"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert body["override_settings"]["sd_model_checkpoint"] == "realisticVision_v30.safetensors"
    renamed = to_a1111(call, {VAE_FILE: ModelFile("my mse vae.safetensors")})  # the library's copy
    assert renamed["override_settings"]["sd_vae"] == "my mse vae.safetensors"
    hostile = _call(vae={"model_id": 1, "version_id": 2, "name": "../../evil:1> <lora:x.pt"})
    assert to_a1111(hostile)["override_settings"]["sd_vae"] == safe_file_name("../../evil:1> <lora:x.pt")
    assert "/" not in to_a1111(hostile)["override_settings"]["sd_vae"]


def _links_resolve(graph: dict[str, Any]) -> None:
    for node in graph.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in graph, f"dangling link {value}"


def test_comfyui_body_wraps_the_graph_and_chains_loras() -> None:
    body = to_payload(_call(), "comfyui")
    assert set(body) == {"prompt"}
    graph = body["prompt"]
    _links_resolve(graph)
    sampler = graph["6"]["inputs"]
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("dpmpp_2m", "karras")
    assert graph["11"]["inputs"]["model"] == ["10", 0]  # second LoRA loads on top of the first
    assert sampler["model"] == ["11", 0]
    assert graph["2"]["inputs"] == {"stop_at_clip_layer": -2, "clip": ["11", 1]}


def test_comfyui_draws_a_seed_for_minus_one_and_keeps_a_given_one() -> None:
    seeds = {to_comfyui(_call())["6"]["inputs"]["seed"] for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= s < SEED_RANGE for s in seeds)
    assert to_comfyui(_call(seed=1234))["6"]["inputs"]["seed"] == 1234


def test_comfyui_adds_clip_skip_only_when_asked() -> None:
    sd2 = _call(
        clip_skip=1,
        loras=[],
        checkpoint={"model_id": 1, "version_id": 2, "name": "x", "base_model": "SD 2.1"},
    )
    graph = to_comfyui(sd2)
    _links_resolve(graph)
    assert all(node["class_type"] != "CLIPSetLastLayer" for node in graph.values())
    assert graph["3"]["inputs"]["clip"] == ["1", 1]


def test_comfyui_writes_textual_inversions_as_embeddings() -> None:
    call = _call(
        negative_prompt="EasyNegative, lowres, bad-hands-5",
        embeddings=[
            {"model_id": 5, "version_id": 55, "name": "EasyNegative"},
            {"model_id": 6, "version_id": 66, "name": "bad hands", "trigger_words": ["bad-hands-5"]},
        ],
    )
    graph = to_comfyui(call, {66: "bad-hands-5.pt"})
    assert graph["4"]["inputs"]["text"] == "embedding:EasyNegative, lowres, embedding:bad-hands-5"
    assert graph["3"]["inputs"]["text"] == "sty, a castle"


def test_comfyui_hires_pass_and_vae() -> None:
    call = _call(
        hires={"scale": 2.0, "upscaler": "Latent", "denoising_strength": 0.55, "steps": 10},
        vae={"model_id": 9, "version_id": 99, "name": "kl-f8-anime2.ckpt"},
    )
    graph = to_comfyui(call, {99: "someCheckpoint.safetensors"})
    _links_resolve(graph)
    assert graph["21"]["inputs"]["denoise"] == 0.55 and graph["21"]["inputs"]["latent_image"] == ["20", 0]
    assert graph["7"]["inputs"] == {"samples": ["21", 0], "vae": ["9", 0]}
    assert graph["9"]["inputs"]["vae_name"] == "kl-f8-anime2.ckpt"


def test_diffusers_arguments_name_local_files() -> None:
    files = {105674: ModelFile("rv.safetensors", path=None), 11: "style_a.safetensors"}
    spec = to_diffusers(_call(sampler="DPM++ 2M SDE Karras", clip_skip=1, seed=7), files)
    assert spec["pipeline"] == "StableDiffusionPipeline" and spec["config"] == "SD1"
    assert spec["checkpoint"] == {"version_id": 105674, "file": "rv.safetensors", "path": None}
    assert spec["scheduler"] == {
        "class": "DPMSolverMultistepScheduler",
        "options": {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    }
    assert spec["call"]["clip_skip"] is None and spec["seed"] == 7
    assert [(lo["file"], lo["weight"]) for lo in spec["loras"]] == [
        ("style_a.safetensors", 0.7),
        ("detailB.safetensors", 0.35),
    ]
    assert "http" not in str(spec)
    xl = to_diffusers(_call(checkpoint={"model_id": 1, "version_id": 2, "name": "x", "base_model": "Pony"}))
    assert xl["pipeline"] == "StableDiffusionXLPipeline" and xl["call"]["clip_skip"] == 1


def test_sd2_512_and_768_get_different_configs() -> None:
    assert pipeline_config("SD 2.1") == "SD2-512" and pipeline_config("SD 2.0") == "SD2-512"
    assert pipeline_config("SD 2.1 768") == "SD2-768-v" and pipeline_config("SD 2.0 768") == "SD2-768-v"
    assert pipeline_config("SDXL 1.0") == "SDXL" and pipeline_config(None) == "SD1"


def test_unknown_format_is_a_one_line_error() -> None:
    from diffagent.errors import DiffAgentError

    with pytest.raises(DiffAgentError, match="unknown payload format"):
        to_payload(_call(), "invokeai")


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


def test_exported_names() -> None:
    import diffagent.execute as execute
    import diffagent.execute.generate as generate
    import diffagent.library as library

    assert execute.__all__ == [
        "FORMATS", "SEED_RANGE", "VAE_FILE", "Files", "ModelFile", "safe_file_name", "safe_stem",
        "split_sampler", "to_a1111", "to_comfyui", "to_diffusers", "to_payload",
    ]  # fmt: skip
    assert generate.__all__ == [
        "BACKENDS", "DEFAULT_URLS", "GenerationError", "Image", "generate", "infotext", "notes_of",
        "png_with_parameters", "read_parameters", "resolve_files", "run_backend", "with_parameters",
        "write_images",
    ]  # fmt: skip
    assert library.__all__ == [
        "MODEL_SUFFIXES", "DownloadError", "FileHashes", "InstalledFile", "Library", "ScanReport",
        "download_version", "hash_file", "lookup_hashes",
    ]  # fmt: skip


def test_written_stem_is_how_a_prompt_names_a_file() -> None:
    assert written_stem("EasyNegative.safetensors") == "easynegative"
    assert written_stem("add_detail.v2.pt") == "add_detail.v2"
    assert written_stem("no-extension") == "no-extension"
