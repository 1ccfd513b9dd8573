"""Loopback servers for the tests: a Civitai download endpoint with faults on demand.

Each one runs ``http.server`` in a thread on 127.0.0.1 and records what it was sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
    body: bytes, faults: list[str], seen: list[dict[str, Any]]
) -> type[BaseHTTPRequestHandler]:
    """Serves ``body`` at ``/api/download/models/ID`` with HTTP Range support, Civitai-style.

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
            data = bytes(b ^ 0xFF for b in body) if fault == "wrong" else body
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
