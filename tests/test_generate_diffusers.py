"""The diffusers backend on a tiny SD 1.x checkpoint made in the test and saved as one LDM-layout
``.safetensors`` file, through the same path a real checkpoint takes (``generate(..., "diffusers")``); and
the packaged family configs, checked against the real models' parameter counts without allocating them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

from _tiny_sd import tiny_sd1, tiny_sdxl, tiny_vocab
from diffagent.execute import ModelFile
from diffagent.execute.generate import (
    GenerationError,
    diffusers_configs,
    generate,
    read_parameters,
)
from diffagent.schema import APICall


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("tiny-sd1")
    checkpoint = folder / "tiny sd1 (v1).safetensors"
    return checkpoint, tiny_sd1(checkpoint)


@pytest.fixture
def sd1(tiny: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny model's configs stand in for SD1's, with a byte-level vocabulary under DIFFAGENT_HOME."""
    import os

    checkpoint, configs = tiny
    monkeypatch.setitem(diffusers_configs.CONFIGS, "SD1", configs)
    tiny_vocab(Path(os.environ["DIFFAGENT_HOME"]) / "clip-tokenizer")
    return checkpoint


def _call(**overrides: Any) -> APICall:
    data: dict[str, Any] = {
        "checkpoint": {"model_id": 1, "version_id": 10, "name": "Tiny", "base_model": "SD 1.5"},
        "prompt": "a castle on a hill",
        "negative_prompt": "blurry",
        "sampler": "DPM++ 2M Karras",
        "steps": 3,
        "cfg_scale": 7.0,
        "width": 64,
        "height": 64,
        "clip_skip": 2,
        "seed": 5,
    }
    data.update(overrides)
    return APICall.model_validate(data)


def _pixels(path: Path) -> bytes:
    from PIL import Image

    return Image.open(io.BytesIO(path.read_bytes())).convert("RGB").tobytes()


def test_generates_a_png_with_its_parameters(sd1: Path, tmp_path: Path) -> None:
    files = {10: ModelFile(sd1.name, sd1, "ab" * 32)}
    (first,) = generate(_call(), "diffusers", files, tmp_path)
    text = read_parameters(first.read_bytes())
    assert text.startswith("a castle on a hill\nNegative prompt: blurry\nSteps: 3, Sampler: DPM++ 2M Karras,")
    assert "Seed: 5," in text and "Model hash: abababab" in text and "Model: tiny sd1 (v1)" in text
    from PIL import Image

    assert Image.open(first).size == (64, 64)
    (again,) = generate(_call(), "diffusers", files, tmp_path)
    (other,) = generate(_call(seed=6), "diffusers", files, tmp_path)
    assert _pixels(again) == _pixels(first) and _pixels(other) != _pixels(first)
    (no_skip,) = generate(_call(clip_skip=1), "diffusers", files, tmp_path)
    assert _pixels(no_skip) != _pixels(first)


def test_the_checkpoint_weights_are_the_files(sd1: Path, tiny: tuple[Path, dict[str, Any]]) -> None:
    import torch
    from safetensors.torch import load_file

    from diffagent.execute import to_diffusers
    from diffagent.execute.generate.diffusers import load_pipeline

    pipe = load_pipeline(to_diffusers(_call(), {10: ModelFile(sd1.name, sd1)}))
    saved = load_file(str(sd1))
    assert torch.equal(pipe.unet.conv_in.weight, saved["model.diffusion_model.input_blocks.0.0.weight"])
    assert torch.equal(
        pipe.unet.up_blocks[1].attentions[0].proj_in.weight,
        saved["model.diffusion_model.output_blocks.2.1.proj_in.weight"],  # up block 1, layer 0,
    )
    assert torch.equal(pipe.vae.decoder.conv_out.weight, saved["first_stage_model.decoder.conv_out.weight"])


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE Karras", "DDIM", "UniPC"])
def test_samplers_run(sd1: Path, tmp_path: Path, sampler: str) -> None:
    (path,) = generate(_call(sampler=sampler, steps=2), "diffusers", {10: ModelFile(sd1.name, sd1)}, tmp_path)
    assert f"Sampler: {sampler}," in read_parameters(path.read_bytes())


def test_lora_weight_changes_the_image(sd1: Path, tmp_path: Path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    from diffagent.execute import to_diffusers
    from diffagent.execute.generate.diffusers import load_pipeline

    pipe = load_pipeline(to_diffusers(_call(), {10: ModelFile(sd1.name, sd1)}))
    unet = pipe.unet
    unet.add_adapter(
        LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
        )
    )
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    lora_state = get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=lora_state, weight_name="style.safetensors"
    )
    unet.delete_adapters("default")
    lora = {"model_id": 2, "version_id": 20, "name": "Style", "weight": 1.0, "trigger_words": []}
    files = {10: ModelFile(sd1.name, sd1), 20: ModelFile("style.safetensors", tmp_path / "style.safetensors")}
    (plain,) = generate(_call(), "diffusers", files, tmp_path / "out")
    (styled,) = generate(_call(loras=[lora]), "diffusers", files, tmp_path / "out")
    (faint,) = generate(_call(loras=[{**lora, "weight": 0.0}]), "diffusers", files, tmp_path / "out")
    assert _pixels(styled) != _pixels(plain)
    assert _pixels(faint) == _pixels(plain)  # weight 0 is no LoRA; and the LoRA was unloaded between calls
    assert "<lora:style:1>" in read_parameters(styled.read_bytes())


def test_a_checkpoint_that_is_not_installed_is_refused(sd1: Path, tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match=r"is not installed: `diffagent library download 10`"):
        generate(_call(), "diffusers", {10: "Tiny.safetensors"}, tmp_path)
    from diffagent.errors import UserInputError

    with pytest.raises(UserInputError, match="--url is for"):
        generate(_call(), "diffusers", {}, tmp_path, url="http://127.0.0.1:7860")


def test_sdxl_generates_with_both_text_encoders_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_torch_thread: None
) -> None:
    import os

    import torch
    from safetensors.torch import load_file

    from diffagent.execute import to_diffusers
    from diffagent.execute.generate.diffusers import load_pipeline

    checkpoint = tmp_path / "tiny-xl.safetensors"
    monkeypatch.setitem(diffusers_configs.CONFIGS, "SDXL", tiny_sdxl(checkpoint))
    tiny_vocab(Path(os.environ["DIFFAGENT_HOME"]) / "clip-tokenizer")
    xl = {"model_id": 3, "version_id": 30, "name": "Tiny XL", "base_model": "Pony"}
    files = {30: ModelFile(checkpoint.name, checkpoint)}
    call = _call(checkpoint=xl, sampler="Euler a", steps=2)
    (first,) = generate(call, "diffusers", files, tmp_path / "out")
    (again,) = generate(call, "diffusers", files, tmp_path / "out")
    assert _pixels(first) == _pixels(again) and "Model: tiny-xl" in read_parameters(first.read_bytes())
    pipe = load_pipeline(to_diffusers(call, files))
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    saved = load_file(str(checkpoint))
    assert torch.equal(
        pipe.text_encoder_2.text_projection.weight, saved["conditioner.embedders.1.model.text_projection"].T
    )
    assert torch.equal(
        pipe.unet.add_embedding.linear_1.weight, saved["model.diffusion_model.label_emb.0.0.weight"]
    )


REAL_PARAMETERS = {  # of the reference models (SD 1.5, SD 2.1, SDXL base 1.0), as published
    "SD1": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "SD2-512": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "SD2-768-v": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "SDXL": {
        "unet": 2_567_463_684,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    },
}


@pytest.mark.parametrize("key", sorted(REAL_PARAMETERS))
def test_packaged_configs_build_the_real_architectures(key: str) -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    counts = {}
    with init_empty_weights():
        for name, config in diffusers_configs.CONFIGS[key].items():
            if name == "unet":
                model = UNet2DConditionModel.from_config(config)
            elif name == "vae":
                model = AutoencoderKL.from_config(config)
            elif name.startswith("text_encoder"):
                cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
                model = cls(CLIPTextConfig(**{k: v for k, v in config.items() if k != "architectures"}))
            else:
                continue
            counts[name] = sum(p.numel() for p in model.parameters())
    assert counts == REAL_PARAMETERS[key]
    schedulers = diffusers_configs.CONFIGS[key]["scheduler"]
    assert schedulers["prediction_type"] == ("v_prediction" if key == "SD2-768-v" else "epsilon")


def test_config_folder_is_written_once_with_the_tokenizer(sd1: Path) -> None:
    folder = diffusers_configs.config_folder("SD1")
    assert (folder / "model_index.json").is_file() and (folder / "tokenizer" / "vocab.json").is_file()
    assert (folder / "unet" / "config.json").is_file()
    with pytest.raises(GenerationError, match="no local diffusers config for the FLUX family"):
        diffusers_configs.config_folder("FLUX")


def test_the_calls_vae_decodes_when_installed_and_is_left_out_with_a_note_when_not(
    sd1: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from diffagent.execute import VAE_FILE
    from diffagent.execute.generate import run_backend

    # a VAE file of its own (LDM keys without the checkpoint's prefix), its decoder made different
    prefix = "first_stage_model."
    vae = {k[len(prefix) :]: v.clone() for k, v in load_file(sd1).items() if k.startswith(prefix)}
    vae["decoder.conv_out.bias"] += 0.5
    vae_path = tmp_path / "other vae.safetensors"
    save_file(vae, vae_path)
    files: dict[int | str, Any] = {10: ModelFile(sd1.name, sd1, "ab" * 32)}
    call = _call(vae={"model_id": 1, "version_id": 10, "name": "other vae.safetensors"})
    (plain,) = generate(_call(), "diffusers", files, tmp_path)
    (missing,) = run_backend(call, "diffusers", files)
    assert missing.notes and "is not installed (`diffagent library download 10 --vae`)" in missing.notes[0]
    assert "VAE:" not in (missing.parameters or "")
    (with_vae,) = generate(
        call, "diffusers", {**files, VAE_FILE: ModelFile(vae_path.name, vae_path)}, tmp_path
    )
    assert "VAE: other vae," in read_parameters(with_vae.read_bytes())
    assert _pixels(with_vae) != _pixels(plain)
    from PIL import Image

    assert Image.open(io.BytesIO(missing.png)).convert("RGB").tobytes() == _pixels(plain)
    (after,) = generate(_call(), "diffusers", files, tmp_path)  # the cached pipeline gets its own back
    assert _pixels(after) == _pixels(plain)


def test_a_textual_inversion_the_call_lists_is_loaded_and_unloaded(sd1: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from diffagent.execute.generate import run_backend

    width = next(v.shape[-1] for k, v in load_file(sd1).items() if k.endswith("token_embedding.weight"))
    torch.manual_seed(0)
    path = tmp_path / "easyneg.safetensors"
    save_file({"emb_params": torch.randn(2, width) * 5}, path)  # A1111's format, two vectors
    files = {10: ModelFile(sd1.name, sd1, "ab" * 32), 30: ModelFile(path.name, path)}
    listed = [{"model_id": 3, "version_id": 30, "name": "EasyNeg", "trigger_words": ["easyneg"]}]
    call = _call(negative_prompt="easyneg, blurry", embeddings=listed)
    (plain,) = generate(_call(negative_prompt="easyneg, blurry"), "diffusers", files, tmp_path)
    (loaded,) = run_backend(call, "diffusers", files)
    assert loaded.notes == ()
    from PIL import Image

    assert Image.open(io.BytesIO(loaded.png)).convert("RGB").tobytes() != _pixels(plain)
    (again,) = generate(_call(negative_prompt="easyneg, blurry"), "diffusers", files, tmp_path)
    assert _pixels(again) == _pixels(plain)  # taken off the cached pipeline again
    (missing,) = run_backend(call, "diffusers", {10: files[10]})
    assert "is not installed (`diffagent library download 30`)" in missing.notes[0]
