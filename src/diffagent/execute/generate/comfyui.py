"""Generate on a ComfyUI server over its HTTP API.

``POST /prompt`` with ``{"prompt": graph, "client_id"}``; ComfyUI validates the graph first and answers
400 with ``node_errors`` (an unknown node class, a checkpoint not in its list), reported here in one line.
Then ``/history/PROMPT_ID`` is polled until the run is done, and each output image fetched with ``/view``.
File names are matched to the server's own lists (``/object_info``) by base name, since ComfyUI names
files in sub-folders ``SD15/model.safetensors``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import PurePath
from typing import Any

import httpx

from ...schema import APICall
from .._common import Files, vae_file, without_vae
from ..comfyui import to_comfyui
from .base import GenerationError, Image, http_client
from .infotext import infotext

__all__ = ["generate_comfyui", "node_errors_line"]

_FILE_INPUTS = {"CheckpointLoaderSimple": "ckpt_name", "LoraLoader": "lora_name", "VAELoader": "vae_name"}


def _choices(info: dict[str, Any], node: str, field: str) -> list[str]:
    """The values ComfyUI offers for a combo input (old ``[[...]]`` and new ``["COMBO", {"options"}]``)."""
    spec = info.get(node, {}).get("input", {}).get("required", {}).get(field) or [[]]
    if isinstance(spec[0], list):
        return spec[0]
    return list((spec[1] if len(spec) > 1 else {}).get("options", []))


def _match_server_names(client: httpx.Client, graph: dict[str, Any]) -> None:
    """Rewrite each file input to the server's spelling of the same base name, where it has one."""
    for node in graph.values():
        field = _FILE_INPUTS.get(node["class_type"])
        if field is None:
            continue
        response = client.get(f"/object_info/{node['class_type']}")
        if response.status_code != 200:
            return
        choices = _choices(response.json(), node["class_type"], field)
        wanted = node["inputs"][field]
        for choice in choices:
            if PurePath(choice.replace("\\", "/")).name == wanted:
                node["inputs"][field] = choice
                break


def _has_vae(client: httpx.Client, name: str) -> bool:
    """Whether the server lists a VAE file of this base name (one it cannot list is taken to have it:
    its validation then says what is wrong)."""
    response = client.get("/object_info/VAELoader")
    if response.status_code != 200:
        return True
    choices = _choices(response.json(), "VAELoader", "vae_name")
    return any(PurePath(choice.replace("\\", "/")).name == name for choice in choices)


def node_errors_line(answer: dict[str, Any]) -> str:
    """ComfyUI's refusal (``error`` and ``node_errors``) as one line."""
    error = answer.get("error") or {}
    parts = [
        str(error.get("message") or error.get("type") or "refused") if isinstance(error, dict) else str(error)
    ]
    for node_id, item in (answer.get("node_errors") or {}).items():
        for err in item.get("errors", []):
            parts.append(
                f"node {node_id} ({item.get('class_type')}): {err.get('message')}: {err.get('details', '')}"
            )
    return "; ".join(p.strip() for p in parts if p)


def generate_comfyui(
    api: APICall,
    files: Files | None,
    url: str,
    client: httpx.Client | None = None,
    timeout_s: float = 900.0,
    poll_s: float = 0.25,
) -> list[Image]:
    """Images from a ComfyUI server for ``api`` (the graph of :func:`diffagent.execute.to_comfyui`)."""
    own = client is None
    client = client or http_client(url, 30.0)
    notes: tuple[str, ...] = ()
    try:
        if api.vae is not None and not _has_vae(client, vae_file(api.vae, files).name):
            api, note = without_vae(api, "the server's models/vae folder does not have it")
            notes = (note,)
        graph = to_comfyui(api, files)
        seed = graph["6"]["inputs"]["seed"]
        _match_server_names(client, graph)
        response = client.post("/prompt", json={"prompt": graph, "client_id": uuid.uuid4().hex})
        answer = response.json() if "json" in response.headers.get("content-type", "") else {}
        if response.status_code != 200:
            raise GenerationError(f"ComfyUI refused the workflow: {node_errors_line(answer)}")
        prompt_id = answer["prompt_id"]
        deadline = time.monotonic() + timeout_s
        while True:
            history = client.get(f"/history/{prompt_id}").json().get(prompt_id)
            if history:  # an entry appears once the run has finished, well or not
                break
            if time.monotonic() > deadline:
                raise GenerationError(f"ComfyUI did not finish prompt {prompt_id} in {timeout_s:.0f} s")
            time.sleep(poll_s)
        status = history.get("status") or {}
        if status.get("status_str") == "error":
            messages = [
                m[1].get("exception_message", "")
                for m in status.get("messages", [])
                if m[0] == "execution_error"
            ]
            raise GenerationError(f"ComfyUI failed to run the workflow: {'; '.join(messages) or 'error'}")
        images = []
        for output in (history.get("outputs") or {}).values():
            for item in output.get("images", []):
                if item.get("type") != "output":
                    continue
                params = {k: item.get(k, "") for k in ("filename", "subfolder", "type")}
                view = client.get("/view", params=params)
                if view.status_code != 200:
                    raise GenerationError(f"ComfyUI answered HTTP {view.status_code} for an image of /view")
                # with the VAE left out, the text says what ran, not what was asked
                text = infotext(api, seed, files) if notes else None
                images.append(Image(view.content, seed, text, notes))
    except httpx.TransportError as exc:
        raise GenerationError(f"cannot reach ComfyUI at {url} ({type(exc).__name__})") from None
    finally:
        if own:
            client.close()
    if not images:
        raise GenerationError(f"ComfyUI finished prompt {prompt_id} without an output image")
    return images
