"""Loopback servers for the tests: a Civitai download endpoint with faults on demand.

Each one runs ``http.server`` in a thread on 127.0.0.1 and records what it was sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from diffagent.catalog import Store
from diffagent.schema import APICall


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def download_handler(
    body: bytes, faults: list[str], seen: list[dict[str, Any]], others: dict[str, bytes] | None = None
) -> type[BaseHTTPRequestHandler]:
    """Serves ``body`` at ``/api/download/models/ID`` with HTTP Range support, Civitai-style; with
    ``others``, a version's other files by their ``type`` query (``?type=VAE&format=Other``), as the real
    endpoint picks them.

    ``faults`` is consumed one per request: ``drop`` (send half the body, then close the connection),
    ``wrong`` (flip the bytes), ``401``, ``429`` (with ``Retry-After: 0``), ``norange`` (ignore Range);
    an empty list serves normally. ``seen`` gets each request's path and headers.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append({"path": self.path, "headers": dict(self.headers)})
            fault = faults.pop(0) if faults else ""
            if not self.path.startswith("/api/download/models/"):
                return self._status(404)
            if fault == "401":
                return self._status(401)
            if fault == "429":
                return self._status(429, {"Retry-After": "0"})
            kind = parse_qs(urlsplit(self.path).query).get("type", ["Model"])[0]
            chosen = (others or {}).get(kind, body)
            data = bytes(b ^ 0xFF for b in chosen) if fault == "wrong" else chosen
            start = 0
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes=") and fault != "norange":
                start = int(ranged[6:].split("-")[0])
                if start >= len(data):
                    return self._status(416)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Content-Disposition", 'attachment; filename="../../evil.safetensors"')
            self.end_headers()
            if fault == "drop":
                self.wfile.write(data[start : start + (len(data) - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(data[start:])

        def _status(self, code: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def tiny_png(rgb: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    """A valid ``size`` x ``size`` RGB PNG, made without Pillow."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class _JSONHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, as a real server's do

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: Any, kind: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return None


def a1111_state_for(store: Store, api: APICall) -> dict[str, Any]:
    """The state of an :func:`a1111_handler` that has the call's checkpoint (the catalogue's file name and
    SHA256) and LoRAs."""
    version = api.checkpoint.version_id
    name, sha = store.primary_files([version])[version], store.primary_sha256([version])[version]
    return {"models": {name: sha}, "loras": [lora.name for lora in api.loras]}


def a1111_handler(state: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    """AUTOMATIC1111's API as 1.9+ behaves: it knows ``state["models"]`` (file name -> sha256),
    ``state["loras"]`` (names), ``state["vaes"]`` (file names), ``state["embeddings"]`` (names) and 1.9
    sampler names (or the joined pre-1.9 ones with ``state["old"]``).

    Like the real server, txt2img silently uses the loaded model when ``sd_model_checkpoint`` names one it
    does not have, and falls back to "Euler a" for an unknown sampler; it answers 422 for a body of the wrong
    shape. ``state["requests"]`` records each txt2img body, ``state["used"]`` what it really ran.
    """
    base = ["DPM++ 2M", "DPM++ SDE", "Euler a", "Euler", "DDIM"]
    names = [f"{n} Karras" for n in base[:2]] + base if state.get("old") else base

    class Handler(_JSONHandler):
        def do_GET(self) -> None:
            if self.path == "/sdapi/v1/sd-models":
                models = [
                    {
                        "title": f"{name} [{sha[:10]}]",
                        "model_name": name.rsplit(".", 1)[0],
                        "hash": sha[:10],
                        "sha256": sha,
                        "filename": f"/srv/models/Stable-diffusion/{name}",
                        "config": None,
                    }
                    for name, sha in state["models"].items()
                ]
                return self._send(200, models)
            if self.path == "/sdapi/v1/samplers":
                return self._send(200, [{"name": n, "aliases": [], "options": {}} for n in names])
            if self.path == "/sdapi/v1/sd-vae":  # each VAE by its file name, as modules/sd_vae.py keys them
                return self._send(
                    200,
                    [{"model_name": n, "filename": f"/srv/models/VAE/{n}"} for n in state.get("vaes", [])],
                )
            if self.path == "/sdapi/v1/embeddings":
                loaded = {n: {"step": None, "vectors": 1, "shape": 768} for n in state.get("embeddings", [])}
                return self._send(200, {"loaded": loaded, "skipped": {}})
            if self.path == "/sdapi/v1/loras":
                return self._send(
                    200,
                    [
                        {"name": n, "alias": n, "path": f"/x/{n}.safetensors", "metadata": {}}
                        for n in state["loras"]
                    ],
                )
            self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            if self.path != "/sdapi/v1/txt2img":
                return self._send(404, {"detail": "Not Found"})
            body = self._body()
            if not isinstance(body, dict) or not all(
                isinstance(body.get(k, 0), int) for k in ("steps", "width", "height", "seed")
            ):
                return self._send(422, {"detail": [{"loc": ["body"], "msg": "value is not a valid integer"}]})
            state.setdefault("requests", []).append(body)
            titles = {f"{n} [{s[:10]}]" for n, s in state["models"].items()}
            wanted = (body.get("override_settings") or {}).get("sd_model_checkpoint")
            sampler = body.get("sampler_name") if body.get("sampler_name") in names else "Euler a"
            seed = body["seed"] if body.get("seed", -1) >= 0 else 987654
            vae = (body.get("override_settings") or {}).get("sd_vae")
            state["used"] = {
                "checkpoint": wanted if wanted in titles else "loaded.safetensors",
                "sampler": sampler,
                # an unknown VAE is logged ("Couldn't find VAE named ...") and the built-in one used
                "vae": vae if vae in state.get("vaes", []) else "None",
            }
            import base64

            used = state["used"]["checkpoint"]
            text = (
                f"{body.get('prompt')}\nNegative prompt: {body.get('negative_prompt')}\n"
                f"Steps: {body['steps']}, Sampler: {sampler}, Seed: {seed},"
                f" Model hash: {used.rsplit('[', 1)[-1].rstrip(']')},"
                f" Model: {used.split(' [')[0].rsplit('.', 1)[0]}"
            )
            info = {"seed": seed, "all_seeds": [seed], "sd_model_name": used, "infotexts": [text]}
            self._send(
                200,
                {
                    "images": [base64.b64encode(tiny_png()).decode()],
                    "parameters": body,
                    "info": json.dumps(info),
                },
            )

    return Handler


COMFY_NODES: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "LoraLoader": ("model", "clip", "lora_name", "strength_model", "strength_clip"),
    "CLIPSetLastLayer": ("clip", "stop_at_clip_layer"),
    "CLIPTextEncode": ("text", "clip"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "KSampler": (
        "model",
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "positive",
        "negative",
        "latent_image",
        "denoise",
    ),
    "LatentUpscaleBy": ("samples", "upscale_method", "scale_by"),
    "VAELoader": ("vae_name",),
    "VAEDecode": ("samples", "vae"),
    "SaveImage": ("images", "filename_prefix"),
}
COMFY_SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m", "dpmpp_sde", "dpmpp_2m_sde", "ddim", "uni_pc")
COMFY_SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple")


def comfyui_handler(state: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    """ComfyUI's ``/prompt``, ``/history``, ``/view`` and ``/object_info`` as ``server.py`` and
    ``execution.validate_prompt`` answer: 400 ``no_prompt`` without a ``prompt`` key, ``invalid_prompt``
    for an unknown node class, ``node_errors`` for a missing input or a file not in its lists
    (``state["checkpoints"]``, ``state["loras"]``). ``state["prompts"]`` records accepted graphs."""

    combos = {
        ("CheckpointLoaderSimple", "ckpt_name"): lambda: state["checkpoints"],
        ("LoraLoader", "lora_name"): lambda: state.get("loras", []),
        ("VAELoader", "vae_name"): lambda: state.get("vaes", []),
        ("KSampler", "sampler_name"): lambda: list(COMFY_SAMPLERS),
        ("KSampler", "scheduler"): lambda: list(COMFY_SCHEDULERS),
    }

    def validate(graph: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            kind = node.get("class_type")
            if kind not in COMFY_NODES:
                error = {
                    "type": "invalid_prompt",
                    "message": f"Cannot execute because node {kind} does not exist.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {},
                }
                return error, {}
            found = []
            for field in COMFY_NODES[kind]:
                value = node.get("inputs", {}).get(field)
                if value is None:
                    found.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": field,
                        }
                    )
                elif isinstance(value, list) and value[0] not in graph:
                    found.append(
                        {"type": "bad_linked_input", "message": "Bad linked input", "details": field}
                    )
                elif (kind, field) in combos and value not in combos[kind, field]():
                    found.append(
                        {
                            "type": "value_not_in_list",
                            "message": "Value not in list",
                            "details": f"{field}: '{value}' not in {combos[kind, field]()}",
                        }
                    )
            if found:
                errors[node_id] = {"errors": found, "dependent_outputs": [], "class_type": kind}
        if not any(node.get("class_type") == "SaveImage" for node in graph.values()):
            return {
                "type": "prompt_no_outputs",
                "message": "Prompt has no outputs",
                "details": "",
                "extra_info": {},
            }, {}
        if errors:
            return {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "",
                "extra_info": {},
            }, errors
        return None, {}

    class Handler(_JSONHandler):
        def do_POST(self) -> None:
            if self.path != "/prompt":
                return self._send(404, {})
            body = self._body()
            if not isinstance(body, dict) or "prompt" not in body:
                error = {
                    "type": "no_prompt",
                    "message": "No prompt provided",
                    "details": "No prompt provided",
                    "extra_info": {},
                }
                return self._send(400, {"error": error, "node_errors": {}})
            error, node_errors = validate(body["prompt"])
            if error is not None:
                return self._send(400, {"error": error, "node_errors": node_errors})
            state.setdefault("prompts", []).append(body)
            prompt_id = f"p{len(state['prompts'])}"
            state.setdefault("polls", {})[prompt_id] = 0
            self._send(200, {"prompt_id": prompt_id, "number": len(state["prompts"]), "node_errors": {}})

        def do_GET(self) -> None:
            from urllib.parse import parse_qs, urlsplit

            parts = urlsplit(self.path)
            if parts.path.startswith("/history/"):
                prompt_id = parts.path.rsplit("/", 1)[1]
                polls = state.get("polls", {})
                if prompt_id not in polls:
                    return self._send(200, {})
                polls[prompt_id] += 1
                if polls[prompt_id] < 2:  # still running on the first poll
                    return self._send(200, {})
                outputs = {
                    "8": {
                        "images": [
                            {"filename": f"diffagent_{prompt_id}_.png", "subfolder": "", "type": "output"}
                        ]
                    }
                }
                status = {"status_str": "success", "completed": True, "messages": []}
                return self._send(200, {prompt_id: {"prompt": [], "outputs": outputs, "status": status}})
            if parts.path == "/view":
                query = parse_qs(parts.query)
                if query.get("type") != ["output"] or not query.get("filename", [""])[0].startswith(
                    "diffagent_"
                ):
                    return self._send(404, {})
                return self._send(200, tiny_png((20, 40, 220)), "image/png")
            if parts.path.startswith("/object_info/"):
                kind = parts.path.rsplit("/", 1)[1]
                if kind not in COMFY_NODES:
                    return self._send(200, {})
                required = {
                    f: ["COMBO", {"options": combos[kind, f]()}] if (kind, f) in combos else ["INT", {}]
                    for f in COMFY_NODES[kind]
                }
                return self._send(200, {kind: {"input": {"required": required}}})
            self._send(404, {})

    return Handler


def by_hash_handler(
    known: dict[str, dict[str, Any]], seen: list[dict[str, Any]]
) -> type[BaseHTTPRequestHandler]:
    """Civitai's ``GET /api/v1/model-versions/by-hash/{hash}``: the version for a known SHA256 (any case),
    404 ``{"error": ...}`` otherwise."""

    class Handler(_JSONHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "headers": dict(self.headers)})
            prefix = "/api/v1/model-versions/by-hash/"
            digest = self.path[len(prefix) :].lower() if self.path.startswith(prefix) else None
            if digest in known:
                return self._send(200, known[digest])
            self._send(404, {"error": f"Model not found for hash {digest}"})

    return Handler
