"""``diffagent library`` and ``diffagent generate`` end to end: a model folder made in the test, matched to
a small real catalogue by hash, ``select --installed`` naming only what is there, and a PNG generated on a
loopback AUTOMATIC1111 and ComfyUI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _servers import a1111_handler, comfyui_handler, serve
from diffagent.bench import ensure_bench
from diffagent.catalog import Store
from diffagent.cli import app
from diffagent.execute.generate import read_parameters
from diffagent.library import Library
from diffagent.schema import Answer

runner = CliRunner()
VAE_BYTES = b"vae weights " * 500
VAE_SHA = hashlib.sha256(VAE_BYTES).hexdigest()


def _installable(store: Store, count: int) -> list[tuple[int, str]]:
    """``count`` SD 1.5 checkpoint versions of different models that have sample images."""
    rows = store.conn.execute(
        """SELECT v.id, f.name FROM versions v JOIN models m ON m.id = v.model_id
           JOIN files f ON f.version_id = v.id AND f.is_primary = 1
           WHERE m.type = 'Checkpoint' AND m.nsfw = 0 AND v.base_model = 'SD 1.5' AND v.position = 0
             AND f.sha256 IS NOT NULL AND f.download_url IS NOT NULL
             AND EXISTS (SELECT 1 FROM images i WHERE i.version_id = v.id)
           ORDER BY m.download_count DESC LIMIT ?""",
        (count,),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


@pytest.fixture(scope="module")
def library_home(
    dump_records: list[dict], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, list[int]]:
    """A DIFFAGENT_HOME over the first dump models whose catalogue hashes of two checkpoints are set to
    those of files made here (renamed, in an A1111-style folder), plus the folder."""
    home = tmp_path_factory.mktemp("lib-home")
    models = tmp_path_factory.mktemp("webui") / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    with Store(home / "catalog.sqlite") as store:
        with store.transaction():
            for record in dump_records:
                store.upsert_model(record)
        chosen = _installable(store, 12)[-2:]  # not the most downloaded: --installed must change the answer
        for n, (version_id, _name) in enumerate(chosen):
            content = f"checkpoint {version_id}".encode() * 1000
            digest = hashlib.sha256(content).hexdigest()
            store.conn.execute(
                "UPDATE files SET sha256 = ?, autov2 = ? WHERE version_id = ? AND is_primary = 1",
                (digest.upper(), digest[:10].upper(), version_id),
            )
            (models / "Stable-diffusion" / f"my model {n}.safetensors").write_bytes(content)
            store.conn.execute(  # each is published with the same VAE, as many checkpoints are
                "INSERT INTO files (version_id, name, type, is_primary, sha256, autov2)"
                " VALUES (?, 'vae-ft-mse-840000-ema-pruned.safetensors', 'VAE', 0, ?, ?)",
                (version_id, VAE_SHA.upper(), VAE_SHA[:10].upper()),
            )
        ensure_bench(store, home / "bench")
    return home, models, [v for v, _ in chosen]


@pytest.fixture
def home(
    library_home: tuple[Path, Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path, list[int]]:
    monkeypatch.setenv("DIFFAGENT_HOME", str(library_home[0]))
    return library_home


def test_scan_and_list(home: tuple[Path, Path, list[int]]) -> None:
    _, models, versions = home
    (models / "stray.ckpt").write_bytes(b"unknown weights")
    result = runner.invoke(app, ["library", "scan", str(models), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["files"] == 3 and sorted(m["version_id"] for m in report["matched"]) == sorted(versions)
    assert [Path(u["path"]).name for u in report["unknown"]] == ["stray.ckpt"]
    listed = runner.invoke(app, ["library", "list", "--json"])
    assert sorted(f.get("version_id", 0) for f in json.loads(listed.stdout)) == sorted([0, *versions])


def test_scan_online_names_unknown_files_civitai_knows(
    home: tuple[Path, Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from _servers import by_hash_handler

    _, models, _ = home
    (models / "stray.ckpt").write_bytes(b"unknown weights")
    digest = hashlib.sha256(b"unknown weights").hexdigest()
    known = {
        digest: {
            "id": 9,
            "modelId": 90,
            "name": "v9",
            "baseModel": "Pony",
            "model": {"name": "Far", "type": "LORA"},
        }
    }
    with serve(by_hash_handler(known, [])) as url:
        monkeypatch.setenv("DIFFAGENT_CIVITAI_URL", f"{url}/api/v1")
        result = runner.invoke(app, ["library", "scan", str(models), "--json", "--online"])
    assert result.exit_code == 0, result.output
    (unknown,) = json.loads(result.stdout)["unknown"]
    assert unknown["civitai"]["version_id"] == 9 and unknown["civitai"]["base_model"] == "Pony"


def test_scan_of_a_missing_folder_is_one_line(home: tuple[Path, Path, list[int]], tmp_path: Path) -> None:
    result = runner.invoke(app, ["library", "scan", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_select_installed_names_only_installed_checkpoints(home: tuple[Path, Path, list[int]]) -> None:
    _, models, versions = home
    runner.invoke(app, ["library", "scan", str(models)])
    for prompt in (
        "a castle on a hill at sunset",
        "portrait photo of an old man",
        "anime girl, cherry blossoms",
    ):
        result = runner.invoke(app, ["select", prompt, "--json", "--installed"])
        assert result.exit_code == 0, result.output
        answer = Answer.model_validate_json(result.stdout)
        assert answer.api.checkpoint.version_id in versions
        assert all(alt.checkpoint.version_id in versions for alt in answer.alternatives)
        assert answer.api.loras == []  # no LoRA is installed


def test_select_installed_names_a_better_fit_to_download(home: tuple[Path, Path, list[int]]) -> None:
    _, models, versions = home
    runner.invoke(app, ["library", "scan", str(models)])
    hints = []
    for prompt in (
        "a castle on a hill at sunset",
        "portrait photo of an old man",
        "anime girl, cherry blossoms",
    ):
        result = runner.invoke(app, ["select", prompt, "--installed"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        hints += [line for line in result.output.splitlines() if line.startswith("better fit to download")]
    assert hints, "two little-downloaded checkpoints are not the catalogue's best for every prompt"
    for hint in hints:
        version = int(hint.rsplit(" ", 1)[1])
        assert version not in versions and hint.endswith(f"library download {version}")


def test_select_format_names_the_installed_file(home: tuple[Path, Path, list[int]]) -> None:
    _, models, _ = home
    runner.invoke(app, ["library", "scan", str(models)])
    result = runner.invoke(app, ["select", "a castle", "--installed", "--format", "comfyui"])
    assert result.exit_code == 0, result.output
    graph = json.loads(result.stdout)["prompt"]
    assert graph["1"]["inputs"]["ckpt_name"] in {"my model 0.safetensors", "my model 1.safetensors"}


def test_generate_on_a1111_and_comfyui(home: tuple[Path, Path, list[int]], tmp_path: Path) -> None:
    _, models, _ = home
    runner.invoke(app, ["library", "scan", str(models)])
    state: dict[str, Any] = {"models": {}, "loras": []}
    for path in (models / "Stable-diffusion").iterdir():
        state["models"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    with serve(a1111_handler(state)) as url:
        result = runner.invoke(
            app, ["generate", "a castle at dusk", "--backend", "a1111", "--url", url, "--installed",
                  "--out", str(tmp_path), "--seed", "42"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    (png,) = [Path(line) for line in result.stdout.splitlines()]
    text = read_parameters(png.read_bytes())
    assert "Seed: 42," in text and "Model hash: " in text and text.startswith("a castle at dusk")
    assert state["used"]["checkpoint"] == state["requests"][0]["override_settings"]["sd_model_checkpoint"]
    comfy: dict[str, Any] = {"checkpoints": [f"sub/{name}" for name in state["models"]]}
    with serve(comfyui_handler(comfy)) as url:
        result = runner.invoke(
            app, ["generate", "a castle at dusk", "--backend", "comfyui", "--url", url, "--installed",
                  "--out", str(tmp_path)],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1 and Path(result.stdout.strip()).is_file()


def test_generate_sends_the_vae_or_says_in_one_line_that_the_server_lacks_it(
    home: tuple[Path, Path, list[int]], tmp_path: Path
) -> None:
    _, models, _ = home
    runner.invoke(app, ["library", "scan", str(models)])
    state: dict[str, Any] = {"models": {}, "loras": [], "vaes": ["kl-f8-anime2.ckpt"]}
    for path in (models / "Stable-diffusion").iterdir():
        state["models"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    command = ["generate", "a castle at dusk", "--backend", "a1111", "--installed", "--out", str(tmp_path)]
    with serve(a1111_handler(state)) as url:
        lacking = runner.invoke(app, [*command, "--url", url])
    assert lacking.exit_code == 0, lacking.output
    assert "the VAE vae-ft-mse-840000-ema-pruned.safetensors that" in lacking.stderr
    assert "left out: the server's models/VAE folder does not have it" in lacking.stderr
    assert "sd_vae" not in state["requests"][-1]["override_settings"] and len(lacking.stdout.split()) == 1
    (models / "VAE").mkdir(exist_ok=True)
    (models / "VAE" / "my mse.safetensors").write_bytes(VAE_BYTES)  # the user's copy, renamed
    runner.invoke(app, ["library", "scan", str(models)])
    state["vaes"].append("my mse.safetensors")
    with serve(a1111_handler(state)) as url:
        having = runner.invoke(app, [*command, "--url", url])
    assert having.exit_code == 0, having.output
    assert state["used"]["vae"] == "my mse.safetensors" and "left out" not in having.stderr
    with Library() as library, Store(home[0] / "catalog.sqlite") as store:
        assert set(library.by_version(store)) == set(home[2])  # the VAE is not taken for a checkpoint
    (models / "VAE" / "my mse.safetensors").unlink()
    runner.invoke(app, ["library", "scan", str(models)])


def test_generate_refuses_what_the_server_lacks_in_one_line(
    home: tuple[Path, Path, list[int]], tmp_path: Path
) -> None:
    with serve(a1111_handler({"models": {}, "loras": []})) as url:
        result = runner.invoke(
            app, ["generate", "a castle", "--backend", "a1111", "--url", url, "--out", str(tmp_path)]
        )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1  # the CLI's error boundary: one line, non-zero exit
    message = errors[0]
    assert "no checkpoint" in message and "library download" in message and not list(tmp_path.iterdir())
