"""A loopback server of today's Civitai API (models, images, by-hash) over the fixture in
``tests/fixtures/civitai-2026``, with faults; the end-to-end tests and ``scripts/crawl_plan.py`` use it."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = ["FIXTURE", "TOKEN", "Civitai2026"]

FIXTURE = Path(__file__).parent / "fixtures" / "civitai-2026"
TOKEN = "civ-2026-s3cret-token"


class Civitai2026:
    """``/api/v1/models``, ``/api/v1/images`` and ``/api/v1/model-versions/by-hash/{hash}`` as documented.

    Refuses what the real API refuses (``limit`` out of range: 400; ``page * limit > 1000``: 429 "use
    cursors"), serves only PG images unless ``browsingLevel`` (bit flags) or ``nsfw`` asks for more, and
    ``meta`` only with ``withMeta=true``. ``faults[endpoint]`` lists faults served one per request before
    answering: ``429`` (Retry-After), ``503`` (the heavy-request bulkhead), ``drop`` (connection closed),
    ``404`` (a version gone since its model page was served).
    """

    def __init__(self, retry_after: str = "3") -> None:
        self.models = json.loads((FIXTURE / "models.json").read_text())
        self.images = json.loads((FIXTURE / "images.json").read_text())
        self.retry_after = retry_after
        self.faults: dict[str, list[str]] = {"models": [], "images": [], "by-hash": []}
        self.log: list[tuple[str, dict[str, list[str]], str | None]] = []
        self.sent: dict[str, int] = {"models": 0, "images": 0, "by-hash": 0}
        """Body bytes of the 200 answers, per endpoint."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    fake.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self, endpoint: str) -> list[dict[str, list[str]]]:
        return [params for name, params, _ in self.log if name == endpoint]

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        params = parse_qs(url.query)
        path = url.path.removeprefix("/api/v1/")
        endpoint = "by-hash" if path.startswith("model-versions/by-hash/") else path
        if endpoint not in self.faults:
            return self._send(request, 404, {"error": "not found"})
        self.log.append((endpoint, params, request.headers.get("Authorization")))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(request, 401, {"error": "unauthorized"})
        fault = self.faults[endpoint].pop(0) if self.faults[endpoint] else None
        if fault == "429":
            return self._send(request, 429, {"error": "rate limited"}, {"Retry-After": self.retry_after})
        if fault == "503":
            return self._send(request, 503, {"error": "too many heavy requests"})
        if fault == "404":  # a version removed between its model page and this request
            return self._send(request, 404, {"error": "Model version not found"})
        if fault == "drop":
            request.close_connection = True
            return None
        if endpoint == "models":
            return self._models(request, params)
        if endpoint == "images":
            return self._images(request, params)
        return self._by_hash(request, path.rsplit("/", 1)[1])

    def _models(self, request: BaseHTTPRequestHandler, params: dict[str, list[str]]) -> None:
        limit = int(params.get("limit", ["100"])[0])
        if not 1 <= limit <= 100:
            return self._send(request, 400, {"error": "limit must be within 1..100"})
        if int(params.get("page", ["1"])[0]) * limit > 1000:
            return self._send(request, 429, {"error": "use cursors for deep pagination"})
        types, bases = params.get("types"), params.get("baseModels")
        sfw_only = params.get("nsfw") == ["false"]
        chosen = [
            m
            for m in self.models
            if (not types or m["type"] in types)
            and (not bases or any(v["baseModel"] in bases for v in m["modelVersions"]))
            and not (sfw_only and (m["nsfw"] or m["nsfwLevel"] & ~3))
        ]
        start = int(params["cursor"][0]) if "cursor" in params else 0
        page = chosen[start : start + limit]
        metadata = {}
        if start + limit < len(chosen):
            metadata = {
                "nextCursor": str(start + limit),
                "nextPage": f"{self.url}/models?cursor={start + limit}",
            }
        return self._send(request, 200, {"items": page, "metadata": metadata})

    def _images(self, request: BaseHTTPRequestHandler, params: dict[str, list[str]]) -> None:
        limit = int(params.get("limit", ["50"])[0])
        if not 0 <= limit <= 200:
            return self._send(request, 400, {"error": "limit must be within 0..200"})
        version = params.get("modelVersionId", [""])[0]
        level = int(params["browsingLevel"][0]) if "browsingLevel" in params else 1
        if params.get("nsfw", ["false"])[0] not in ("false", "None"):
            level = 31
        with_meta = params.get("withMeta") == ["true"]
        items = [
            {**image, "meta": image["meta"] if with_meta else None}
            for image in self.images.get(version, [])
            if image["browsingLevel"] & level
        ][:limit]
        return self._send(request, 200, {"items": items, "metadata": {}})

    def _by_hash(self, request: BaseHTTPRequestHandler, digest: str) -> None:
        for model in self.models:
            for version in model["modelVersions"]:
                for file in version["files"]:
                    if digest.upper() in {h.upper() for h in file["hashes"].values()}:
                        model_head = {k: model[k] for k in ("name", "type", "nsfw", "poi")}
                        answer = {**version, "modelId": model["id"], "model": model_head}
                        return self._send(request, 200, answer)
        return self._send(request, 404, {"error": f"Model not found: {digest}"})

    def _send(
        self, request: BaseHTTPRequestHandler, status: int, body: object, headers: dict | None = None
    ) -> None:
        data = json.dumps(body).encode()
        if status == 200:
            path = urlsplit(request.path).path.removeprefix("/api/v1/")
            key = "by-hash" if path.startswith("model-versions/") else path
            self.sent[key] = self.sent.get(key, 0) + len(data)
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(data)
