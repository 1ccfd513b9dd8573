"""``diffagent generate``: select an API call for a prompt, then run it on diffusers, AUTOMATIC1111 /
Forge or ComfyUI, and print the paths of the PNGs written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..bench import SPLITS
from ..catalog import Store
from ..client import open_agent
from ..execute.generate import BACKENDS, notes_of, resolve_files, run_backend, write_images
from ..schema import APICall
from ..textsafety import strip_control
from ._common import console, fail, open_store, progress_bar

__all__ = ["download_hint", "generate_command"]


def download_hint(store: Store, prompt: str, chosen: APICall, **options: Any) -> str | None:
    """A line naming the catalogue's best checkpoint for ``prompt`` when the installed choice is not
    among the unrestricted agent's top three (a clear gap, not a near tie), with the command to get it."""
    best = open_agent(store, "default", splits=SPLITS, **options).select(prompt, 5).alternatives
    if not best or chosen.checkpoint.model_id in {alt.checkpoint.model_id for alt in best[:3]}:
        return None
    top = best[0].checkpoint
    return (
        f"better fit to download: {top.name} ({top.base_model}, version {top.version_id}):"
        f" diffagent library download {top.version_id}"
    )


def generate_command(
    prompt: str = typer.Argument(..., help="the text-to-image prompt"),
    backend: str = typer.Option("diffusers", "--backend", help=f"one of: {', '.join(BACKENDS)}"),
    url: str = typer.Option(
        None, "--url", help="server root (a1111 default http://127.0.0.1:7860, comfyui http://127.0.0.1:8188)"
    ),
    out: Path = typer.Option(Path("outputs"), "--out", help="folder for the PNGs"),
    installed: bool = typer.Option(
        False, "--installed", help="only checkpoints and LoRAs you have (library scan)"
    ),
    base_models: list[str] = typer.Option(
        [], "--base-model", help="restrict to this base model (repeatable)"
    ),
    seed: int = typer.Option(None, "--seed", help="seed (default: the answer's, -1 = random)"),
) -> None:
    """Select the best call for PROMPT (default agent), generate with BACKEND, print the PNG paths."""
    if not prompt.strip():
        fail("the prompt is empty")
    if backend not in BACKENDS:
        fail(f"--backend takes one of: {', '.join(BACKENDS)}")
    options: dict[str, Any] = {"base_models": base_models} if base_models else {}
    with open_store() as store:
        with progress_bar("preparing the default agent (first use builds it)") as update:
            agent = open_agent(
                store, "default", splits=SPLITS, progress=update, installed=installed, **options
            )
        api = agent.select(prompt, 1).api
        if seed is not None:
            api = api.model_copy(update={"seed": seed})
        files = resolve_files(store, api)
        hint = download_hint(store, prompt, api, **options) if installed else None
    if hint:
        console.print(hint, markup=False, highlight=False)
    console.print(
        f"{api.checkpoint.name} ({api.checkpoint.base_model}), {len(api.loras)} LoRA(s), {api.sampler},"
        f" {api.steps} steps, {api.width}x{api.height} on {backend}",
        markup=False,
        highlight=False,
    )
    images = run_backend(api, backend, files, url)
    for note in notes_of(images):
        console.print(strip_control(note), markup=False, highlight=False)  # names are catalogue text
    for path in write_images(api, images, files, out):
        typer.echo(str(path))
