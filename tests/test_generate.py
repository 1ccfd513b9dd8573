"""Generation over HTTP against loopback AUTOMATIC1111 and ComfyUI servers that refuse what the real ones
refuse, and the ``parameters`` text every PNG carries."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from _servers import a1111_handler, comfyui_handler, serve, tiny_png
from diffagent.execute import ModelFile
from diffagent.execute.generate import (
    GenerationError,
    generate,
    infotext,
    read_parameters,
    with_parameters,
)
from diffagent.schema import APICall

CKPT_SHA = hashlib.sha256(b"checkpoint").hexdigest()
LORA_SHA = hashlib.sha256(b"lora").hexdigest()
LORA_V3 = hashlib.sha256(b"lora tensors").hexdigest()


def _call(**overrides: Any) -> APICall:
    data: dict[str, Any] = {
        "checkpoint": {"model_id": 1, "version_id": 10, "name": "Real Vision", "base_model": "SD 1.5"},
        "loras": [
            {"model_id": 2, "version_id": 20, "name": "Style A", "weight": 0.8, "trigger_words": ["sty"]}
        ],
        "prompt": "sty, a castle at dusk",
        "negative_prompt": "lowres, blurry",
        "sampler": "DPM++ 2M Karras",
        "steps": 20,
        "cfg_scale": 6.5,
        "width": 512,
        "height": 768,
        "clip_skip": 2,
        "seed": -1,
    }
    data.update(overrides)
    return APICall.model_validate(data)


FILES = {
    10: ModelFile("realVision_v5.safetensors", sha256=CKPT_SHA),
    20: ModelFile("styleA.safetensors", sha256=LORA_SHA, autov3=LORA_V3),
}


def test_infotext_is_what_a1111_writes() -> None:
    text = infotext(_call(), 1234, FILES)
    prompt, negative, settings = text.split("\n")
    assert prompt == "sty, a castle at dusk <lora:styleA:0.8>"
    assert negative == "Negative prompt: lowres, blurry"
    assert settings.startswith(
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234, Size: 512x768, "
    )
    assert f"Model hash: {CKPT_SHA[:10]}, Model: realVision_v5, Clip skip: 2" in settings
    assert f'Lora hashes: "styleA: {LORA_V3[:12]}"' in settings


def test_infotext_carries_hires_and_vae_as_a1111_names_them() -> None:
    from test_execute import _call as full_call

    call = full_call(
        hires={"scale": 1.5, "upscaler": "4x-UltraSharp", "denoising_strength": 0.4, "steps": 12},
        vae={"model_id": 9, "version_id": 99, "name": "vae-ft-mse-840000.safetensors"},
    )
    settings = infotext(call, 1, {99: "checkpoint.safetensors"}).split("\n")[2]
    assert "VAE: vae-ft-mse-840000," in settings
    assert (
        "Denoising strength: 0.4, Hires upscale: 1.5, Hires steps: 12, Hires upscaler: 4x-UltraSharp"
        in settings
    )


def test_parameters_chunk_round_trips_and_replaces_an_old_one() -> None:
    png = tiny_png()
    once = with_parameters(png, "first")
    assert read_parameters(once) == "first" and read_parameters(png) is None
    twice = with_parameters(once, "ünïcode ✓")
    assert read_parameters(twice) == "ünïcode ✓" and twice.count(b"parameters") == 1
    with pytest.raises(GenerationError.__mro__[1]):
        with_parameters(b"GIF89a", "x")


def test_the_chunk_is_a_valid_png_for_pillow() -> None:
    image_module = pytest.importorskip("PIL.Image")
    import io

    image = image_module.open(io.BytesIO(with_parameters(tiny_png(), "a prompt\nSteps: 20")))
    image.load()
    assert image.info["parameters"] == "a prompt\nSteps: 20" and image.size == (8, 8)


def _a1111(state: dict[str, Any], call: APICall, tmp_path: Path) -> list[Path]:
    with serve(a1111_handler(state)) as url:
        return generate(call, "a1111", FILES, tmp_path, url=url)


def test_a1111_finds_the_checkpoint_by_hash_and_sends_the_1_9_sampler(tmp_path: Path) -> None:
    state: dict[str, Any] = {"models": {"renamed-on-server.safetensors": CKPT_SHA}, "loras": ["styleA"]}
    (path,) = _a1111(state, _call(), tmp_path)
    body = state["requests"][0]
    assert (
        body["override_settings"]["sd_model_checkpoint"] == f"renamed-on-server.safetensors [{CKPT_SHA[:10]}]"
    )
    assert (body["sampler_name"], body["scheduler"]) == ("DPM++ 2M", "Karras")
    assert state["used"] == {
        "checkpoint": body["override_settings"]["sd_model_checkpoint"],
        "sampler": "DPM++ 2M",
        "vae": "None",  # the call names no VAE: the checkpoint's own decodes
    }
    assert "<lora:styleA:0.8>" in body["prompt"]
    text = read_parameters(path.read_bytes())
    assert "Seed: 987654," in text and path.name.endswith("-987654.png")  # the seed the server drew
    assert f"Model hash: {CKPT_SHA[:10]}, Model: renamed-on-server" in text  # the server's own infotext


def test_a1111_before_1_9_gets_the_joined_sampler_name(tmp_path: Path) -> None:
    state: dict[str, Any] = {"models": {"rv.safetensors": CKPT_SHA}, "loras": ["styleA"], "old": True}
    _a1111(state, _call(seed=5), tmp_path)
    assert (
        state["requests"][0]["sampler_name"] == "DPM++ 2M Karras" and "scheduler" not in state["requests"][0]
    )
    assert state["used"]["sampler"] == "DPM++ 2M Karras"


def test_a1111_refuses_a_checkpoint_the_server_lacks_naming_the_file(tmp_path: Path) -> None:
    state: dict[str, Any] = {"models": {"other.safetensors": "0" * 64}, "loras": ["styleA"]}
    with pytest.raises(
        GenerationError, match=r"no checkpoint realVision_v5\.safetensors .*library download 10"
    ):
        _a1111(state, _call(), tmp_path)
    assert "requests" not in state and not list(tmp_path.iterdir())


def test_a1111_refuses_a_missing_lora_and_an_unknown_sampler(tmp_path: Path) -> None:
    state: dict[str, Any] = {"models": {"rv.safetensors": CKPT_SHA}, "loras": []}
    with pytest.raises(GenerationError, match=r"no LoRA styleA\.safetensors"):
        _a1111(state, _call(), tmp_path)
    with pytest.raises(GenerationError, match="no sampler 'UniPC'"):
        _a1111({**state, "loras": ["styleA"]}, _call(sampler="UniPC"), tmp_path)
    assert "requests" not in state


def test_a1111_unreachable_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="cannot reach AUTOMATIC1111"):
        generate(_call(), "a1111", FILES, tmp_path, url="http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("code", "body", "said"),
    [(500, b"<html>Internal Server Error</html>", "answered HTTP 500 for /sdapi/v1/sd-models"),
     (200, b"<html>a login page</html>", "with something that is not JSON")],
)  # fmt: skip
def test_a1111_failing_is_one_line_not_a_traceback(tmp_path: Path, code: int, body: bytes, said: str) -> None:
    """A server error (a crashed extension, a proxy's page) is the generator's failure, said in one line."""
    base = a1111_handler({"models": {}, "loras": []})

    class Broken(base):  # type: ignore[valid-type, misc]
        def do_GET(self) -> None:
            if self.path == "/sdapi/v1/sd-models":
                return self._send(code, body, "text/html")
            return super().do_GET()

    with serve(Broken) as url, pytest.raises(GenerationError, match=said):
        generate(_call(), "a1111", FILES, tmp_path, url=url)
    assert not list(tmp_path.iterdir())


def _comfy(state: dict[str, Any], call: APICall, tmp_path: Path) -> list[Path]:
    with serve(comfyui_handler(state)) as url:
        return generate(call, "comfyui", FILES, tmp_path, url=url)


def test_comfyui_runs_the_graph_and_writes_its_seed(tmp_path: Path) -> None:
    state: dict[str, Any] = {
        "checkpoints": ["SD15/realVision_v5.safetensors"],
        "loras": ["styleA.safetensors"],
    }
    (path,) = _comfy(state, _call(), tmp_path)
    body = state["prompts"][0]
    assert set(body) == {"prompt", "client_id"}
    graph = body["prompt"]
    assert graph["1"]["inputs"]["ckpt_name"] == "SD15/realVision_v5.safetensors"  # the server's spelling
    seed = graph["6"]["inputs"]["seed"]
    assert seed >= 0 and f"Seed: {seed}," in read_parameters(path.read_bytes())
    assert state["polls"]["p1"] >= 2  # it waited for the run to finish


def test_comfyui_node_errors_come_back_in_one_line(tmp_path: Path) -> None:
    state: dict[str, Any] = {"checkpoints": ["something_else.safetensors"], "loras": ["styleA.safetensors"]}
    with pytest.raises(GenerationError) as caught:
        _comfy(state, _call(), tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "node 1 (CheckpointLoaderSimple): Value not in list" in message
    assert "realVision_v5.safetensors" in message


def test_the_loopback_comfyui_refuses_what_the_real_one_refuses() -> None:
    state: dict[str, Any] = {"checkpoints": ["a.safetensors"]}
    with serve(comfyui_handler(state)) as url:
        bare = httpx.post(f"{url}/prompt", json={"1": {"class_type": "SaveImage", "inputs": {}}})
        assert bare.status_code == 400 and bare.json()["error"]["type"] == "no_prompt"
        unknown = httpx.post(
            f"{url}/prompt", json={"prompt": {"1": {"class_type": "MadeUpNode", "inputs": {}}}}
        )
        assert (
            unknown.status_code == 400 and "MadeUpNode does not exist" in unknown.json()["error"]["message"]
        )


def test_generate_refuses_an_unknown_backend(tmp_path: Path) -> None:
    from diffagent.errors import DiffAgentError

    with pytest.raises(DiffAgentError, match="unknown backend"):
        generate(_call(), "invokeai", FILES, tmp_path)
