"""The service over real sockets: idle connections closed, abandoned batches stopped, slow work cut off,
a new catalogue revision served once rebuilt, and one agent's build not blocking another agent's requests."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import copy_catalog
from diffagent.catalog import Store, validate_call
from diffagent.schema import APICall
from diffagent.service import AgentKey, AgentPool, ReadOnlyStore, ServiceConfig, create_app
from diffagent.service.pool import _open
from live_server import file_store, serve


@pytest.fixture(scope="module")
def catalog_file(dump_records: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return file_store(dump_records, tmp_path_factory.mktemp("live") / "catalog.sqlite")


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closes the connection (waits for it, up to 20 s)."""
    sock.settimeout(20)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_and_half_open_connections_are_closed(catalog_file: Path) -> None:
    app = create_app(ReadOnlyStore(catalog_file), ServiceConfig(agent="tfidf", rate_per_s=0))
    with serve(app, idle_timeout_s=1) as url:
        silent = socket.create_connection(_address(url))
        half = socket.create_connection(_address(url))
        half.sendall(b"GET /hea")  # half a request line, then nothing
        assert _closed_by_server(silent)
        assert _closed_by_server(half)
        silent.close()
        half.close()


def _post_and_leave(url: str, path: str, body: bytes) -> None:
    sock = socket.create_connection(_address(url))
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    time.sleep(0.2)
    sock.close()


def test_a_batch_stops_when_its_client_goes_away(
    catalog_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServiceConfig(agent="tfidf", rate_per_s=0, batch_chunk=1)
    app = create_app(ReadOnlyStore(catalog_file), config)
    items = [{"id": i, "prompt": f"a detailed fantasy castle on a hill, number {i}"} for i in range(1000)]
    app.state.pool.get(AgentKey("tfidf"))  # built before, so that only the batch is timed
    with caplog.at_level(logging.INFO, logger="diffagent.service"), serve(app) as url:
        _post_and_leave(url, "/select/batch", json.dumps({"items": items}).encode())
        for _ in range(600):
            if any("abandoned" in r.getMessage() for r in caplog.records):
                break
            time.sleep(0.05)
    message = next(r.getMessage() for r in caplog.records if "abandoned" in r.getMessage())
    done = int(message.split(" after ")[1].split(" of ")[0])
    assert done < 1000, message


def test_a_batch_past_the_request_timeout_gets_503(catalog_file: Path) -> None:
    config = ServiceConfig(agent="tfidf", rate_per_s=0, batch_chunk=1, request_timeout_s=0.2)
    client = httpx.Client(timeout=60)
    app = create_app(ReadOnlyStore(catalog_file), config)
    app.state.pool.get(AgentKey("tfidf"))  # built before, so that the deadline falls inside the batch
    with serve(app) as url:
        items = [{"id": i, "prompt": f"a detailed fantasy castle, number {i}"} for i in range(1000)]
        response = client.post(f"{url}/select/batch", json={"items": items})
    assert response.status_code == 503
    assert "no answer within 0.2 s" in response.json()["detail"] and response.headers["retry-after"]


@pytest.mark.usefixtures("shared_agent_cache")  # the first agent is the session's; the second is built
def test_a_new_catalogue_revision_is_served_once_rebuilt(
    dump_records: list[dict], dump_catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copy_catalog(dump_catalog, tmp_path / "svc")
    config = ServiceConfig(agent="default", rate_per_s=0, revision_check_s=0)
    app = create_app(ReadOnlyStore(path), config)
    prompt = {"prompt": "a castle at sunset, fantasy landscape, detailed"}
    with serve(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        first = http.post("/select", json=prompt).json()["api"]
        chosen = first["checkpoint"]["model_id"]
        # the catalogue changes under the running service: the chosen checkpoint is now marked NSFW,
        # which the default agent may not name
        record = next(r for r in dump_records if r["id"] == chosen)
        with Store(path) as writer, writer.transaction():
            writer.upsert_model({**record, "nsfw": True})
            revision = writer.revision
        http.post("/select", json=prompt)  # notices the revision; the rebuild starts in the background
        assert app.state.pool.wait_refreshed(120)
        health = http.get("/health").json()
        fresh = http.post("/select", json=prompt).json()["api"]
    assert health["revision"] == revision and health["agents_loaded"] == ["default"]
    assert fresh["checkpoint"]["model_id"] != chosen
    with Store(path) as reader:
        assert validate_call(reader, APICall.model_validate(fresh)) == []


def test_building_one_agent_does_not_block_another(catalog_file: Path) -> None:
    release = threading.Event()
    building = threading.Event()

    def slow_opener(store: Store, key: AgentKey, progress=None):  # type: ignore[no-untyped-def]
        if key.name == "popular":
            building.set()
            release.wait(60)
        return _open(store, key, progress)

    pool = AgentPool(ReadOnlyStore(catalog_file), opener=slow_opener)
    tfidf = pool.get(AgentKey("tfidf"))
    slow = threading.Thread(target=pool.get, args=(AgentKey("popular"),), daemon=True)
    slow.start()
    assert building.wait(60)
    assert pool.get(AgentKey("tfidf")) is tfidf  # answered while "popular" is still building
    assert tfidf.select("a red car").api.checkpoint.name
    assert slow.is_alive()
    release.set()
    slow.join(60)
    assert sorted(key.name for key in pool.loaded) == ["popular", "tfidf"]


def test_the_pool_keeps_only_the_most_recent_agents(catalog_file: Path) -> None:
    pool = AgentPool(ReadOnlyStore(catalog_file), max_agents=2)
    for name in ("tfidf", "popular", "tfidf", "random"):
        pool.get(AgentKey(name))
    assert [key.name for key in pool.loaded] == ["tfidf", "random"]


def test_a_body_that_stalls_gets_408(catalog_file: Path) -> None:
    config = ServiceConfig(agent="tfidf", rate_per_s=0, body_timeout_s=0.5)
    with serve(create_app(ReadOnlyStore(catalog_file), config)) as url:
        sock = socket.create_connection(_address(url))
        sock.sendall(b'POST /select HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"prompt": ')
        sock.settimeout(20)
        answer = sock.recv(4096)
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 0.5 s" in answer
