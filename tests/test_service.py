"""The HTTP service answers like the CLI: valid API calls, payloads, batch order, clear 422s."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from diffagent.catalog import Store, validate_call
from diffagent.schema import APICall
from diffagent.service import create_app


@pytest.fixture(scope="module")
def client(dump_records: list[dict], tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    store = Store(tmp_path_factory.mktemp("svc") / "catalog.sqlite")
    for record in dump_records:
        store.upsert_model(record)
    return TestClient(create_app(store))


def test_select_returns_a_valid_call_and_payload(client: TestClient) -> None:
    response = client.post(
        "/select", json={"prompt": "a castle at sunset", "agent": "tfidf", "format": "comfyui"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    api = APICall.model_validate(body["api"])
    assert validate_call(client.app.state.store, api) == []
    assert body["payload"]["prompt"]["6"]["class_type"] == "KSampler"  # the body POST /prompt takes
    assert 1 <= len(body["alternatives"]) <= 5


def test_batch_keeps_order_and_ids(client: TestClient) -> None:
    items = [{"id": i, "prompt": p} for i, p in enumerate(["a red car", "anime girl, blue hair", "a forest"])]
    response = client.post("/select/batch", json={"items": items, "agent": "tfidf", "k": 2})
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [0, 1, 2]


def test_bad_requests_are_422(client: TestClient) -> None:
    assert client.post("/select", json={"prompt": ""}).status_code == 422
    assert client.post("/select", json={"prompt": "x", "agent": "nope"}).status_code == 422
    assert client.post("/select", json={"prompt": "x", "agent": "tfidf", "format": "png"}).status_code == 422
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["catalog"]["models"] == 600
    assert client.get("/schema").json()["title"] == "APICall"


def test_empty_catalogue_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="catalogue is empty"):
        create_app(Store(tmp_path / "empty.sqlite"))
