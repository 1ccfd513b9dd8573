"""A real uvicorn server on a free loopback port, in a thread, for tests that need sockets or a browser."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from diffagent.catalog import Store
from diffagent.service import ReadOnlyStore, ServiceConfig, create_app
from diffagent.service.server import IdleTimeoutH11


def file_store(records: list[dict], path: Path) -> Path:
    """A catalogue file holding ``records`` (the service opens it read-only itself)."""
    with Store(path) as store, store.transaction():
        for record in records:
            store.upsert_model(record)
    return path


def service_app(catalog: Path, **settings: object) -> Any:
    """The service over the catalogue file ``catalog`` (read-only) with the tests' defaults, the TF-IDF
    agent (nothing to build) and no rate limit; ``settings`` are ServiceConfig fields that override them."""
    config = ServiceConfig(**{"agent": "tfidf", "rate_per_s": 0, **settings})  # type: ignore[arg-type]
    return create_app(ReadOnlyStore(catalog), config)


@contextmanager
def serve(app: Any, idle_timeout_s: int = 5) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL, ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, http=IdleTimeoutH11, timeout_keep_alive=idle_timeout_s, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.02)
    else:
        raise RuntimeError("the test server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
