"""Base-model families: every Civitai string of today maps, unknown ones claim nothing, recipes are sane."""

from __future__ import annotations

import pytest

from diffagent.catalog import (
    FAMILIES,
    architecture,
    compatibility,
    compatible,
    default_size,
    family,
    family_spec,
    recipe,
    single_file_config,
    size_ok,
    snap_size,
)

KNOWN = {
    "SD 1.4": "SD1", "SD 1.5": "SD1", "SD 1.5 LCM": "SD1", "SD 1.5 Hyper": "SD1",
    "SD 2.0": "SD2", "SD 2.1": "SD2", "SD 2.0 768": "SD2-768", "SD 2.1 768": "SD2-768",
    "SDXL 0.9": "SDXL", "SDXL 1.0": "SDXL", "SDXL Turbo": "SDXL", "SDXL Lightning": "SDXL",
    "SDXL Hyper": "SDXL", "SDXL 1.0 LCM": "SDXL", "Playground v2": "SDXL",
    "Pony": "Pony", "Pony V7": "AuraFlow", "Illustrious": "Illustrious", "NoobAI": "NoobAI",
    "SD 3": "SD3", "SD 3.5": "SD3", "SD 3.5 Large": "SD3", "SD 3.5 Medium": "SD3",
    "Flux.1 S": "Flux1", "Flux.1 D": "Flux1", "Flux.1 Krea": "Flux1", "Flux.1 Kontext": "Flux1",
    "Flux.2 D": "Flux2", "Chroma": "Chroma", "HiDream": "HiDream", "Kolors": "Kolors", "Qwen": "Qwen",
    "SD 3.5 Large Turbo": "SD3", "Hunyuan 1": "Hunyuan", "Hunyuan Video": "Video",
    "Wan Video 14B t2v": "Video", "ZImageTurbo": "ZImage", "Imagen4": "Hosted", "Veo 3": "Hosted",
    "AuraFlow": "AuraFlow",
}  # fmt: skip


@pytest.mark.parametrize(("base", "expected"), sorted(KNOWN.items()))
def test_every_listed_base_model_maps_to_its_family(base: str, expected: str) -> None:
    assert family(base) == expected


@pytest.mark.parametrize("base", ["Other", "", None, "Totally New Model 9", "Upscaler"])
def test_unknown_base_models_claim_nothing(base: str | None) -> None:
    assert family(base) is None and family_spec(base) is None
    assert compatibility("SD 1.5", base) == "unknown" and compatible("SD 1.5", base)
    assert size_ok(base, 64, 4096)  # no bounds are claimed for what is not known


def test_lora_compatibility_full_within_partial_across_the_sdxl_group_none_across_architectures() -> None:
    assert compatibility("SDXL 1.0", "SDXL Lightning") == "full"
    assert (
        compatibility("SDXL 1.0", "Pony") == "partial" and compatibility("Illustrious", "NoobAI") == "partial"
    )
    assert compatibility("SD 1.5", "SDXL 1.0") == "none" and not compatible("SD 1.5", "Pony")
    assert compatibility("Flux.1 D", "Flux.1 S") == "full" and not compatible("Flux.1 D", "SDXL 1.0")
    assert architecture("Pony") == architecture("SDXL 1.0") == "SDXL"


def test_few_step_variants_are_told_by_the_base_model_string_too() -> None:
    assert recipe("Flux.1 S").steps <= 8 and recipe("Flux.1 S").guidance is None  # FLUX.1 [schnell]
    assert recipe("SD 3.5 Large Turbo").steps <= 12 and recipe("SD 3.5 Large").steps >= 20
    assert compatibility("Pony", "Pony V7") == "none"  # AuraFlow underneath


def test_recipes_follow_the_family_and_its_few_step_variants() -> None:
    flux = recipe("Flux.1 D")
    assert flux.cfg_scale <= 3.5 and flux.guidance == 3.5 and flux.scheduler == "simple"
    assert not FAMILIES["Flux1"].negative
    assert recipe("SDXL Lightning").steps <= 8 and recipe("SDXL Lightning").cfg_scale <= 2
    assert recipe("SD 1.5", "DreamShaper 8 LCM").sampler == "LCM"
    assert recipe("SD 1.5", "Realistic Vision").steps >= 20
    assert family_spec("Pony").clip_skip == 2 and family_spec("Illustrious").clip_skip == 2  # type: ignore[union-attr]
    assert all(spec.diffusers_config for spec in FAMILIES.values())
    assert single_file_config("Flux.1 S") == "black-forest-labs/FLUX.1-schnell"
    assert single_file_config("SD 2.1 768") != single_file_config("SD 2.1")  # 768-v and 512 configs differ
    assert FAMILIES["Flux1"].comfy_loader == "unet" and FAMILIES["Flux1"].comfy_clip_type == "flux"
    assert recipe("SD 1.5").steps_for("DPM++ SDE Karras") == (5, 60)  # two model calls a step
    assert recipe("SD 1.5").steps_for("Euler a") == recipe("SD 1.5").steps_range == (10, 60)
    for spec in FAMILIES.values():
        low, high = spec.recipe.steps_range
        assert low <= spec.recipe.steps <= high, spec.name
        width, height = spec.default_sizes["portrait"]
        assert width % 8 == 0 and height % 8 == 0 and height >= width, spec.name


def test_sizes_are_about_a_megapixel_for_sdxl_and_flux_and_snap_to_buckets() -> None:
    for base in ("SDXL 1.0", "Pony", "Flux.1 D"):
        width, height = default_size(base)
        assert 0.8 <= width * height / 1e6 <= 1.2 and size_ok(base, width, height)
    assert default_size("SD 1.5", "landscape") == (768, 512)
    assert not size_ok("SD 1.5", 896, 1344) and not size_ok("SD 1.5", 256, 256)
    assert snap_size("SDXL 1.0", 512, 768) == (832, 1216)  # an SD1 size moved to the nearest SDXL bucket
    assert snap_size("SD 1.5", 512, 768) == (512, 768)  # a size that fits stays
