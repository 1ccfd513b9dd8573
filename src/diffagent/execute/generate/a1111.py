"""Generate on an AUTOMATIC1111 / Forge server over its HTTP API (started with ``--api``).

The server silently ignores a checkpoint it does not have and replaces an unknown sampler with its
default, so the image would be made with whatever is loaded. Hence the checks first: the checkpoint is
found in ``/sdapi/v1/sd-models`` by hash or file name, each LoRA in ``/sdapi/v1/loras``, the sampler in
``/sdapi/v1/samplers`` (joined ``DPM++ 2M Karras`` for servers before 1.9, split after), and anything
missing is refused with one line naming the file to install. Only then ``POST /sdapi/v1/txt2img``; the
PNGs keep the server's own ``parameters`` text (``info.infotexts``), whose hashes are of the files it used.
"""

from __future__ import annotations

import base64
import json
from pathlib import PurePath
from typing import Any

import httpx

from ...filenames import safe_stem
from ...schema import APICall
from .._common import Files, model_file, vae_file, without_vae
from ..a1111 import join_sampler, to_a1111
from .base import GenerationError, Image, http_client

__all__ = ["generate_a1111"]


def _get(client: httpx.Client, path: str) -> Any:
    response = client.get(path)
    if response.status_code == 404:
        raise GenerationError(f"{client.base_url} has no {path}: start AUTOMATIC1111 / Forge with --api")
    if response.status_code != 200:  # a generator's failure is one line, never a traceback
        raise GenerationError(f"AUTOMATIC1111 answered HTTP {response.status_code} for {path}")
    try:
        return response.json()
    except ValueError:
        raise GenerationError(f"AUTOMATIC1111 answered {path} with something that is not JSON") from None


def _checkpoint_title(models: list[dict[str, Any]], api: APICall, files: Files | None) -> str:
    """The server's title of the call's checkpoint, matched by SHA256, AutoV2 or file name."""
    wanted = model_file(api.checkpoint.version_id, api.checkpoint.name, files)
    for item in models:
        sha256, short = (item.get("sha256") or "").lower(), (item.get("hash") or "").lower()
        if wanted.sha256 and (sha256 == wanted.sha256.lower() or short == wanted.autov2):
            return item["title"]
    for item in models:
        if PurePath(item.get("filename") or "").name == wanted.name or item.get("model_name") == safe_stem(
            wanted.name
        ):
            return item["title"]
    hash_note = f" (AutoV2 {wanted.autov2})" if wanted.autov2 else ""
    raise GenerationError(
        f"the server has no checkpoint {wanted.name}{hash_note} for {api.checkpoint.name!r}: put it in"
        f" models/Stable-diffusion (`diffagent library download {api.checkpoint.version_id}`) and refresh"
    )


def _check_loras(loras: list[dict[str, Any]], api: APICall, files: Files | None) -> None:
    names = {item.get("name") for item in loras} | {item.get("alias") for item in loras}
    for lora in api.loras:
        wanted = model_file(lora.version_id, lora.name, files)
        if safe_stem(wanted.name) not in names:
            raise GenerationError(
                f"the server has no LoRA {wanted.name} for {lora.name!r}: put it in models/Lora"
                f" (`diffagent library download {lora.version_id}`) and refresh"
            )


def _vae_name(vaes: list[dict[str, Any]], wanted: str) -> str | None:
    """The server's name of the VAE file ``wanted`` (``/sdapi/v1/sd-vae`` lists each by file name)."""
    for item in vaes:
        names = {item.get("model_name") or "", PurePath(item.get("filename") or "").name}
        if wanted in names or safe_stem(wanted) in {safe_stem(n) for n in names if n}:
            return item.get("model_name") or PurePath(item.get("filename") or "").name
    return None


def _missing_embeddings(listed: dict[str, Any], api: APICall) -> tuple[str, ...]:
    """A line for each of the call's embeddings the server has not loaded (its name then stays a word:
    A1111 finds an embedding by its file name in the prompt, case aside)."""
    loaded = {name.lower() for name in (listed.get("loaded") or {})}
    return tuple(
        f"the embedding {item.name} is not loaded on the server (models/embeddings): its name stays a word"
        for item in api.embeddings or ()
        if not loaded & {word.lower() for word in item.trigger_words}
    )


def _sampler_fields(samplers: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    """Sampler and scheduler the way this server takes them; an unknown sampler is refused."""
    known = {s["name"] for s in samplers} | {a for s in samplers for a in s.get("aliases") or ()}
    joined = join_sampler(body["sampler_name"], body["scheduler"])
    if joined != body["sampler_name"] and joined in known:  # before 1.9 the schedule is in the name
        return {"sampler_name": joined}
    if body["sampler_name"] in known:
        return {"sampler_name": body["sampler_name"], "scheduler": body["scheduler"]}
    raise GenerationError(f"the server has no sampler {joined!r}; it has: {', '.join(sorted(known))}")


def generate_a1111(
    api: APICall, files: Files | None, url: str, client: httpx.Client | None = None
) -> list[Image]:
    """Images from ``url``'s ``/sdapi/v1/txt2img`` for ``api``, after checking the server has its files."""
    own = client is None
    client = client or http_client(url, 900.0)
    try:
        body = to_a1111(api, files)
        body["override_settings"]["sd_model_checkpoint"] = _checkpoint_title(
            _get(client, "/sdapi/v1/sd-models"), api, files
        )
        if api.loras:
            _check_loras(_get(client, "/sdapi/v1/loras"), api, files)
        notes: tuple[str, ...] = ()
        if api.vae is not None:
            title = _vae_name(_get(client, "/sdapi/v1/sd-vae"), vae_file(api.vae, files).name)
            if title is None:
                api, note = without_vae(api, "the server's models/VAE folder does not have it")
                body["override_settings"].pop("sd_vae", None)
                notes = (note,)
            else:
                body["override_settings"]["sd_vae"] = title
        if api.embeddings:
            notes += _missing_embeddings(_get(client, "/sdapi/v1/embeddings"), api)
        sampling = _sampler_fields(_get(client, "/sdapi/v1/samplers"), body)
        body.pop("scheduler")
        body.update(sampling)
        response = client.post("/sdapi/v1/txt2img", json=body)
        if response.status_code != 200:
            detail = (
                response.json().get("detail") if "json" in response.headers.get("content-type", "") else ""
            )
            raise GenerationError(f"txt2img answered HTTP {response.status_code}: {str(detail)[:300]}")
        result = response.json()
    except httpx.TransportError as exc:
        raise GenerationError(f"cannot reach AUTOMATIC1111 at {url} ({type(exc).__name__})") from None
    finally:
        if own:
            client.close()
    info = json.loads(result.get("info") or "{}")
    seeds = info.get("all_seeds") or [info.get("seed", api.seed)]
    texts = info.get("infotexts") or []
    return [
        Image(
            base64.b64decode(data.split(",", 1)[-1]),
            int(seeds[min(i, len(seeds) - 1)]),
            texts[i] if i < len(texts) and isinstance(texts[i], str) else None,
            notes,
        )
        for i, data in enumerate(result.get("images") or [])
    ]
