"""The VAE a checkpoint version is published with: in the catalogue beside the model file (never taken
for it), in the API call, in every payload, in generation (left out with a note when the generator lacks
it), in the user's library and in verified downloads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from _servers import a1111_handler, comfyui_handler, download_handler, serve
from diffagent.catalog import Store, hallucination_reasons, validate_call
from diffagent.execute import VAE_FILE, ModelFile
from diffagent.execute.generate import read_parameters, run_backend, write_images
from diffagent.library import Library, download_version
from diffagent.schema import APICall

CKPT = b"checkpoint tensors " * 4000
VAE = b"vae tensors " * 3000
CKPT_SHA, VAE_SHA = hashlib.sha256(CKPT).hexdigest(), hashlib.sha256(VAE).hexdigest()


def _file(name: str, content: bytes, kind: str, primary: bool) -> dict[str, Any]:
    digest = hashlib.sha256(content).hexdigest()
    return {
        "name": name,
        "type": kind,
        "primary": primary,
        "sizeKB": len(content) / 1024,
        "metadata": {"format": "SafeTensor" if name.endswith(".safetensors") else "Other"},
        "hashes": {"SHA256": digest.upper(), "AutoV2": digest[:10].upper()},
        "downloadUrl": "https://civitai.com/api/download/models/11",
    }


def _record(primary: bool = True) -> dict[str, Any]:
    """One checkpoint version (11) listing its model file and the VAE it is published with."""
    return {
        "id": 1,
        "name": "Real Vision",
        "type": "Checkpoint",
        "modelVersions": [
            {
                "id": 11,
                "name": "v3 (noVAE)",
                "baseModel": "SD 1.5",
                "files": [
                    _file("vae-ft-mse-840000-ema-pruned.pt", VAE, "VAE", False),
                    _file("realVision_v3.safetensors", CKPT, "Model", primary),
                ],
            }
        ],
    }


def _store(primary: bool = True) -> Store:
    store = Store()
    store.upsert_model(_record(primary))
    return store


def _call(**overrides: Any) -> APICall:
    data: dict[str, Any] = {
        "checkpoint": {"model_id": 1, "version_id": 11, "name": "Real Vision", "base_model": "SD 1.5"},
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "lowres",
        "sampler": "DPM++ 2M Karras",
        "steps": 20,
        "cfg_scale": 6.5,
        "width": 512,
        "height": 768,
        "vae": {"model_id": 1, "version_id": 11, "name": "vae-ft-mse-840000-ema-pruned.pt"},
    }
    data.update(overrides)
    return APICall.model_validate(data)


def test_the_vae_is_optional_in_the_json_and_checked_against_the_catalogue() -> None:
    store = _store()
    assert "vae" not in _call(vae=None).model_dump() and "embeddings" not in _call().model_dump()
    assert _call().model_dump()["vae"]["name"] == "vae-ft-mse-840000-ema-pruned.pt"
    assert validate_call(store, _call()) == []
    made_up = _call(vae={"model_id": 1, "version_id": 11, "name": "realVision_v3.safetensors"})
    assert hallucination_reasons(store, made_up) == [
        "version 11 lists no VAE file 'realVision_v3.safetensors'"
    ]
    unknown = _call(vae={"model_id": 1, "version_id": 99, "name": "x.pt"})
    assert hallucination_reasons(store, unknown) == ["VAE version 99 is not in the catalogue"]
    embedding = _call(embeddings=[{"model_id": 1, "version_id": 11, "name": "Real Vision"}])
    assert hallucination_reasons(store, embedding) == [
        "embedding version 11 is a Checkpoint, not a TextualInversion"
    ]


def test_the_vae_file_is_never_taken_for_the_checkpoint() -> None:
    store = _store(primary=False)  # no file marked primary: the model file is still the model
    assert store.primary_files([11]) == {11: "realVision_v3.safetensors"}
    assert store.primary_sha256([11]) == {11: CKPT_SHA.upper()}  # as Civitai writes it
    found = store.file_by_hash(VAE_SHA)
    assert found is not None and found.type == "VAE" and not found.is_model
    assert store.version_by_hash(VAE_SHA).version_id == 11  # type: ignore[union-attr]
    assert {v: f.name for v, f in store.vae_files().items()} == {11: "vae-ft-mse-840000-ema-pruned.pt"}


def test_a_scanned_vae_is_not_the_checkpoint_installed_but_is_the_calls_vae(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffagent.execute.generate import resolve_files

    monkeypatch.setenv("DIFFAGENT_HOME", str(tmp_path / "home"))
    store = _store()
    models = tmp_path / "models"
    (models / "VAE").mkdir(parents=True)
    (models / "VAE" / "my-mse.pt").write_bytes(VAE)
    with Library() as library:
        report = library.scan([models], store).to_json()
        assert report["matched"][0]["file_type"] == "VAE"
        assert library.by_version(store) == {}  # the checkpoint is not installed
    files = resolve_files(store, _call())
    assert files[11] == ModelFile("realVision_v3.safetensors", None, CKPT_SHA.upper())
    assert files[VAE_FILE] == ModelFile("my-mse.pt", models / "VAE" / "my-mse.pt", VAE_SHA)
    (models / "Stable-diffusion").mkdir()
    (models / "Stable-diffusion" / "rv.safetensors").write_bytes(CKPT)
    with Library() as library:
        library.scan([models], store)
        assert library.by_version(store)[11].path.name == "rv.safetensors"
    assert resolve_files(store, _call())[11].path == models / "Stable-diffusion" / "rv.safetensors"


def test_download_of_the_vae_asks_for_it_by_type_and_verifies_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, seen = _store(), []
    with serve(download_handler(CKPT, [], seen, others={"VAE": VAE})) as url:
        monkeypatch.setenv("DIFFAGENT_CIVITAI_URL", f"{url}/api/v1")
        monkeypatch.setenv("DIFFAGENT_HOME", str(tmp_path / "home"))
        path, hashes = download_version(store, 11, vae=True)
        model, _ = download_version(store, 11, tmp_path / "ckpt")
    assert path == tmp_path / "home" / "models" / "VAE" / "vae-ft-mse-840000-ema-pruned.pt"
    assert path.read_bytes() == VAE and hashes.sha256 == VAE_SHA
    assert seen[0]["path"] == "/api/download/models/11?type=VAE&format=Other"
    assert model.name == "realVision_v3.safetensors" and model.read_bytes() == CKPT
    assert seen[1]["path"] == "/api/download/models/11"


FILES: dict[int | str, ModelFile] = {11: ModelFile("realVision_v3.safetensors", sha256=CKPT_SHA)}


def test_a1111_gets_the_servers_vae_or_none_with_a_note(tmp_path: Path) -> None:
    state: dict[str, Any] = {"models": {"rv3.safetensors": CKPT_SHA}, "loras": [], "vaes": []}
    state["vaes"] = ["vae-ft-mse-840000-ema-pruned.pt"]
    with serve(a1111_handler(state)) as url:
        (image,) = run_backend(_call(), "a1111", FILES, url)
    assert state["used"]["vae"] == "vae-ft-mse-840000-ema-pruned.pt" and image.notes == ()
    state["vaes"] = ["kl-f8-anime2.ckpt"]
    with serve(a1111_handler(state)) as url:
        (image,) = run_backend(_call(), "a1111", FILES, url)
    assert "sd_vae" not in state["requests"][-1]["override_settings"] and state["used"]["vae"] == "None"
    assert image.notes == (
        "the VAE vae-ft-mse-840000-ema-pruned.pt that Real Vision is published with is left out:"
        " the server's models/VAE folder does not have it",
    )


def test_comfyui_loads_the_vae_it_lists_or_decodes_with_the_checkpoints(tmp_path: Path) -> None:
    state: dict[str, Any] = {
        "checkpoints": ["realVision_v3.safetensors"],
        "vaes": ["SD15/vae-ft-mse-840000-ema-pruned.pt"],
    }
    with serve(comfyui_handler(state)) as url:
        (image,) = run_backend(_call(), "comfyui", FILES, url)
        graph = state["prompts"][-1]["prompt"]
        assert graph["9"]["inputs"]["vae_name"] == "SD15/vae-ft-mse-840000-ema-pruned.pt"
        assert graph["7"]["inputs"]["vae"] == ["9", 0] and image.notes == ()
        state["vaes"] = []
        (image,) = run_backend(_call(), "comfyui", FILES, url)
    graph = state["prompts"][-1]["prompt"]
    assert "9" not in graph and graph["7"]["inputs"]["vae"] == ["1", 2]
    assert image.notes and "left out" in image.notes[0]
    (path,) = write_images(_call(), [image], FILES, tmp_path)
    assert "VAE:" not in read_parameters(path.read_bytes())  # the text says what ran


def test_lookup_says_a_hash_is_the_vae_a_version_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from diffagent.cli import app

    monkeypatch.setenv("DIFFAGENT_HOME", str(tmp_path))
    with Store(tmp_path / "catalog.sqlite") as store:
        store.upsert_model(_record())
    vae = CliRunner().invoke(app, ["catalog", "lookup", VAE_SHA, "--offline"])
    assert vae.exit_code == 0 and vae.stdout.startswith("the VAE file of Real Vision / v3 (noVAE): model 1,")
    model = CliRunner().invoke(app, ["catalog", "lookup", CKPT_SHA, "--offline", "--json"])
    assert json.loads(model.stdout)["version_id"] == 11 and "file_type" not in json.loads(model.stdout)
