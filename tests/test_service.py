"""The HTTP service answers like the CLI and refuses bad input with a 4xx that never echoes the input."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import copy_catalog
from diffagent.catalog import Store, validate_call
from diffagent.errors import UserInputError
from diffagent.schema import APICall
from diffagent.service import ReadOnlyStore, ServiceConfig, create_app
from live_server import serve, service_app

pytestmark = pytest.mark.usefixtures("shared_agent_cache")


@pytest.fixture(scope="module")
def catalog_file(dump_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_catalog(dump_catalog, tmp_path_factory.mktemp("svc"))


def make_client(catalog_file: Path, **settings: object) -> TestClient:
    return TestClient(service_app(catalog_file, **settings))


def state(client: TestClient) -> Any:
    """The app's state (its store and agent pool)."""
    return client.app.state  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def client(catalog_file: Path) -> TestClient:
    return make_client(catalog_file)


def test_select_returns_a_valid_call_and_payloads(client: TestClient) -> None:
    response = client.post(
        "/select",
        json={"prompt": "a castle at sunset", "format": "comfyui", "formats": ["a1111", "diffusers"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    api = APICall.model_validate(body["api"])
    assert validate_call(state(client).store, api) == []
    assert body["payload"]["prompt"]["6"]["class_type"] == "KSampler"  # the body POST /prompt takes
    assert set(body["payloads"]) == {"a1111", "diffusers"}
    assert body["payloads"]["a1111"]["steps"] == api.steps
    assert 1 <= len(body["alternatives"]) <= 5


def test_filters_reach_the_default_agent_and_the_rest_is_noted(client: TestClient) -> None:
    body = client.post(
        "/select",
        json={
            "prompt": "a castle at sunset",
            "agent": "default",
            "base_models": ["SD 2.1 768"],
        },
    ).json()
    assert body["api"]["checkpoint"]["base_model"] == "SD 2.1 768"
    assert all(alt["checkpoint"]["base_model"] == "SD 2.1 768" for alt in body["alternatives"])
    none_installed = client.post(
        "/select", json={"prompt": "a castle", "agent": "default", "installed": True}
    )
    assert none_installed.status_code == 422 and "library scan" in none_installed.json()["detail"]
    loaded = len(state(client).pool.loaded)
    unknown = client.post("/select", json={"prompt": "x", "agent": "default", "base_models": ["Nope 9"]})
    assert unknown.status_code == 422 and unknown.json()["detail"].startswith("unknown base model")
    assert len(state(client).pool.loaded) == loaded  # refused before building an agent for it
    tfidf = client.post("/select", json={"prompt": "x", "base_models": ["SD 1.5"], "allow_poi": True}).json()
    assert tfidf["notes"] == ["the tfidf agent takes no base-model filter; it was not applied"]


def test_batch_keeps_order_and_ids(client: TestClient) -> None:
    items = [{"id": i, "prompt": p} for i, p in enumerate(["a red car", "anime girl, blue hair", "a forest"])]
    response = client.post("/select/batch", json={"items": items, "k": 2})
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [0, 1, 2]


RAW_BAD_BODIES = [
    '{"prompt": ""}',
    '{"prompt": "   \\n\\t "}',
    '{"prompt": "\\ud800"}',
    '{"prompt": "a cat\\u0000"}',
    '{"prompt": "a \\u001b[31mcat"}',
    '{"prompt": "a cat", "k": NaN}',
    '{"prompt": "a cat", "k": Infinity}',
    '{"prompt": "a cat", "k": 1e400}',
    '{"prompt": "a cat", "k": 0}',
    '{"prompt": "a cat", "k": true}',
    '{"prompt": "a cat", "agent": "nope"}',
    '{"prompt": "a cat", "agent": "llm"}',
    '{"prompt": "a cat", "format": "png"}',
    '{"prompt": "a cat", "formats": ["a1111", "png"]}',
    '{"prompt": "a cat", "base_models": ["\\ud800"]}',
    '{"prompt": "a cat", "base_models": [""]}',
    '{"prompt": "a cat", "unknown": 1}',
    '{"prompt": ["a cat"]}',
    '{"prompt": null}',
    '["a cat"]',
    '"a cat"',
    "{not json",
    "",
]


@pytest.mark.parametrize("raw", RAW_BAD_BODIES)
def test_bad_select_bodies_are_4xx(client: TestClient, raw: str) -> None:
    response = client.post("/select", content=raw.encode(), headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, (raw, response.status_code, response.text)
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "raw",
    [
        '{"items": []}',
        '{"items": [{"id": 1, "prompt": " "}]}',
        '{"items": [{"id": "\\ud800", "prompt": "a cat"}]}',
        '{"items": [{"id": 1.5, "prompt": "a cat"}]}',
        '{"items": [{"id": 1}]}',
        '{"items": {"id": 1, "prompt": "a cat"}}',
        '{"items": [{"id": 1, "prompt": "a cat"}], "k": NaN}',
    ],
)
def test_bad_batch_bodies_are_4xx(client: TestClient, raw: str) -> None:
    response = client.post(
        "/select/batch", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, (raw, response.status_code, response.text)


def test_long_prompts_and_big_batches_are_refused_without_echo(client: TestClient) -> None:
    secret = "a very particular prompt " * 200  # 5,000 characters
    response = client.post("/select", json={"prompt": secret})
    assert response.status_code == 422
    assert "longer than 4,000 characters" in response.json()["detail"]
    assert "particular" not in response.text
    items = [{"id": i, "prompt": f"prompt number {i}"} for i in range(1001)]
    response = client.post("/select/batch", json={"items": items})
    assert response.status_code == 422 and len(response.content) < 200
    assert response.json()["detail"] == "a batch holds at most 1,000 prompts"
    response = client.post(
        "/select/batch", json={"items": [{"id": 0, "prompt": "x"}, {"id": 1, "prompt": secret}]}
    )
    assert response.status_code == 422 and response.json()["detail"].startswith(
        "items[1]: the prompt is longer"
    )
    response = client.post("/select", content=b'{"prompt": "\\ud800 secret"}')
    assert response.status_code == 422 and "secret" not in response.text


def test_bodies_over_the_limit_are_413(client: TestClient) -> None:
    big = json.dumps({"prompt": "x" * 70_000}).encode()
    response = client.post("/select", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"] == "the body is larger than this endpoint's limit of 65,536 bytes"

    def chunked():  # no Content-Length: counted while reading
        for _ in range(100):
            yield b"x" * 1000

    assert client.post("/select", content=chunked()).status_code == 413
    # a batch may be bigger than a single request, up to its own limit
    items = [{"id": i, "prompt": f"a landscape painting, number {i}, " + "detail " * 10} for i in range(800)]
    body = json.dumps({"items": items, "k": 1}).encode()
    assert 64 * 1024 < len(body) < 4 * 1024 * 1024
    assert (
        client.post("/select/batch", content=body, headers={"content-type": "application/json"}).status_code
        == 200
    )
    huge = b'{"items": [' + b'{"id": 1, "prompt": "a cat"},' * 200_000 + b'{"id": 2, "prompt": "a"}]}'
    response = client.post("/select/batch", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and len(response.content) < 200


def test_health_is_cheap_and_open(catalog_file: Path) -> None:
    client = make_client(catalog_file, api_key="s3cret")
    health = client.get("/health")
    assert health.status_code == 200
    assert set(health.json()) == {
        "status",
        "revision",
        "refreshing",
        "agents_loaded",
        "ready",
        "auth_required",
    }
    assert health.json()["auth_required"] is True
    assert health.json()["revision"] == Store(catalog_file).revision


def test_api_key_is_required_when_configured(catalog_file: Path) -> None:
    client = make_client(catalog_file, api_key="s3cret")
    assert client.get("/").status_code == 200  # the page loads, then asks for the key
    assert client.get("/static/app.js").status_code == 200
    for path in ("/info", "/schema", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 401, path
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        response = client.post("/select", json={"prompt": "a cat"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    ok = client.post("/select", json={"prompt": "a cat"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_rate_limit_answers_429_with_retry_after(catalog_file: Path) -> None:
    client = make_client(catalog_file, rate_per_s=0.5, rate_burst=2)
    codes = [client.post("/select", json={"prompt": "a cat"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = client.post("/select", json={"prompt": "a cat"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert client.get("/health").status_code == 200  # monitoring is never limited


def test_rate_limit_buckets_are_per_client() -> None:
    from diffagent.service.limits import RateLimit, client_id

    limit = RateLimit(app=None, rate=1.0, burst=1)  # type: ignore[arg-type]
    assert limit.take("a", 100.0) == 0 and limit.take("b", 100.0) == 0
    assert limit.take("a", 100.0) == pytest.approx(1.0)
    assert limit.take("a", 101.5) == 0  # refilled
    scope = {"client": ("10.0.0.1", 5), "headers": [(b"x-forwarded-for", b"1.2.3.4, 5.6.7.8")]}
    assert client_id(scope, trust_forwarded_for=False) == "10.0.0.1"
    assert client_id(scope, trust_forwarded_for=True) == "5.6.7.8"


def test_cors_is_off_unless_configured(catalog_file: Path) -> None:
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    closed = make_client(catalog_file)
    assert "access-control-allow-origin" not in closed.options("/select", headers=preflight).headers
    assert (
        "access-control-allow-origin"
        not in closed.get("/health", headers={"Origin": "https://example.org"}).headers
    )
    opened = make_client(catalog_file, cors_origins=("https://example.org",))
    answer = opened.options("/select", headers=preflight)
    assert answer.headers["access-control-allow-origin"] == "https://example.org"
    other = opened.options("/select", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_access_log_leaves_prompts_out(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="diffagent.access"):
        client.get("/?prompt=my+secret+castle")
        client.post("/select", json={"prompt": "my secret castle"})
    lines = [r.getMessage() for r in caplog.records if r.name == "diffagent.access"]
    assert any("GET / 200" in line for line in lines) and any("POST /select 200" in line for line in lines)
    assert not any("secret" in line for line in lines)


def test_page_is_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    script = client.get("/static/app.js").text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    info = client.get("/info").json()
    assert info["generate"] is None and info["formats"] == ["a1111", "comfyui", "diffusers"]
    counts = {b["name"]: b["checkpoints"] for b in info["base_models"]}
    assert counts["SD 1.5"] >= 1 and all(n >= 1 for n in counts.values())


def test_a_bad_request_does_not_break_the_keep_alive_connection(catalog_file: Path) -> None:
    app = create_app(ReadOnlyStore(catalog_file), ServiceConfig(agent="tfidf", rate_per_s=0))
    with serve(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        bad = http.post("/select", content=b'{"prompt": "\\ud800", "k": NaN}')
        good = http.post("/select", json={"prompt": "a cat"})
        assert (bad.status_code, good.status_code) == (422, 200)


def test_empty_catalogue_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="catalogue is empty"):
        create_app(Store(tmp_path / "empty.sqlite"))
    with pytest.raises(UserInputError, match="no catalogue at"):
        ReadOnlyStore(tmp_path / "missing.sqlite")


def test_read_only_store_refuses_writes_and_gives_each_thread_its_connection(catalog_file: Path) -> None:
    import sqlite3
    import threading

    store = ReadOnlyStore(catalog_file)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.set_state("revision", "0")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(store.conn))
    thread.start()
    thread.join()
    assert seen[0] is not store.conn and store.revision == Store(catalog_file).revision
    store.close()


def test_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFAGENT_API_KEY", "k1")
    monkeypatch.setenv("DIFFAGENT_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("DIFFAGENT_RATE_LIMIT", "3")
    config = ServiceConfig.from_env(agent="tfidf")
    assert (config.api_key, config.cors_origins, config.rate_per_s, config.agent) == (
        "k1",
        ("https://a.example", "https://b.example"),
        3.0,
        "tfidf",
    )
    monkeypatch.setenv("DIFFAGENT_RATE_LIMIT", "fast")
    with pytest.raises(UserInputError, match="DIFFAGENT_RATE_LIMIT must be a number"):
        ServiceConfig.from_env()
    monkeypatch.setenv("DIFFAGENT_RATE_LIMIT", "nan")
    with pytest.raises(UserInputError, match="rate_per_s"):
        ServiceConfig.from_env()
    monkeypatch.setenv("DIFFAGENT_RATE_LIMIT", "1")
    monkeypatch.setenv("DIFFAGENT_API_KEY", " ")
    with pytest.raises(UserInputError, match="empty"):
        ServiceConfig.from_env()


def test_real_person_models_are_left_out_unless_allowed(client: TestClient, dump_records: list[dict]) -> None:
    people = {r["id"] for r in dump_records if r.get("poi") is True}
    named = [r["name"] for r in dump_records if r.get("poi") is True and r.get("type") == "Checkpoint"]
    if not named:
        pytest.skip("the catalogue in use has no real-person checkpoint")
    asked_for = 0
    for name in named:
        allowed = client.post("/select", json={"prompt": name, "agent": "default", "allow_poi": True}).json()
        if allowed["api"]["checkpoint"]["model_id"] not in people:
            continue
        asked_for += 1
        safe = client.post("/select", json={"prompt": name, "agent": "default"}).json()
        calls = [safe["api"], *safe["alternatives"]]
        assert all(c["checkpoint"]["model_id"] not in people for c in calls), name
        assert all(lo["model_id"] not in people for c in calls for lo in c["loras"]), name
        assert safe["api"]["checkpoint"] == safe["alternatives"][0]["checkpoint"]
    assert asked_for >= 1  # the catalogue's own names do bring real-person models up when allowed
