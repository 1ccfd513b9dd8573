"""The HTTP service refuses careless input with a 422 that says why, never a 500, and sends no tags."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from diffagent.catalog import Store
from diffagent.service import create_app


@pytest.fixture(scope="module")
def client(dump_records: list[dict], tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    store = Store(tmp_path_factory.mktemp("svc") / "catalog.sqlite")
    with store.transaction():
        for record in dump_records[:300]:
            store.upsert_model(record)
    return TestClient(create_app(store))


def test_a_prompt_of_only_tags_is_a_422(client: TestClient) -> None:
    response = client.post("/select", json={"prompt": "<lora:../../../etc/passwd:1>", "agent": "tfidf"})
    assert response.status_code == 422 and "generator tags" in response.json()["detail"]


def test_tags_in_a_prompt_never_reach_the_payload(client: TestClient) -> None:
    response = client.post(
        "/select", json={"prompt": "a castle <lora:../../evil:1e+20>", "agent": "tfidf", "format": "a1111"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "evil" not in body["api"]["prompt"] and "evil" not in body["payload"]["prompt"]
