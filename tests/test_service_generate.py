"""POST /generate: the first answer run on the service's generator (a loopback AUTOMATIC1111 here), the PNGs
returned with their parameters, one image at a time, and nothing offered when no generator is configured."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _servers import a1111_handler, a1111_state_for, serve
from conftest import copy_catalog
from diffagent.catalog import validate_call
from diffagent.errors import MissingExtra, UserInputError
from diffagent.execute.generate import read_parameters
from diffagent.schema import APICall
from diffagent.service import ReadOnlyStore, ServiceConfig, create_app
from live_server import service_app

pytestmark = pytest.mark.usefixtures("shared_agent_cache")

PROMPT = "a castle on a hill at sunset"


@pytest.fixture(scope="module")
def catalog_file(dump_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_catalog(dump_catalog, tmp_path_factory.mktemp("gen"))


def _client(catalog_file: Path, **settings: object) -> TestClient:
    return TestClient(service_app(catalog_file, **settings))


def _server_state(client: TestClient) -> dict[str, Any]:
    """A loopback A1111 that has the checkpoint the answer names (by the catalogue's file and hash)."""
    api = APICall.model_validate(client.post("/select", json={"prompt": PROMPT, "k": 1}).json()["api"])
    return a1111_state_for(client.app.state.store, api)  # type: ignore[attr-defined]


def test_without_a_generator_the_route_and_the_button_are_absent(catalog_file: Path) -> None:
    client = _client(catalog_file)
    assert client.get("/info").json()["generate"] is None
    response = client.post("/generate", json={"prompt": PROMPT})
    assert response.status_code == 404 and "--generate" in response.json()["detail"]


def test_generates_the_first_answer_with_its_parameters(catalog_file: Path) -> None:
    probe = _client(catalog_file)
    state = _server_state(probe)
    with serve(a1111_handler(state)) as url:
        client = _client(catalog_file, generate_backend="a1111", generator_url=url)
        assert client.get("/info").json()["generate"] == "a1111"
        response = client.post("/generate", json={"prompt": PROMPT, "seed": 42, "formats": ["a1111"]})
    assert response.status_code == 200, response.text
    body = response.json()
    api = APICall.model_validate(body["api"])
    assert validate_call(client.app.state.store, api) == [] and api.seed == 42  # type: ignore[attr-defined]
    (image,) = body["images"]
    assert image.startswith("data:image/png;base64,") and body["seeds"] == [42]
    text = read_parameters(base64.b64decode(image.split(",", 1)[1]))
    assert text.startswith(api.prompt) and "Seed: 42," in text
    sent = state["requests"][0]
    assert sent["seed"] == 42 and sent["prompt"] == api.prompt
    assert state["used"]["checkpoint"] == sent["override_settings"]["sd_model_checkpoint"]


def test_a_generator_that_lacks_the_checkpoint_is_one_line_502(catalog_file: Path) -> None:
    with serve(a1111_handler({"models": {}, "loras": []})) as url:
        client = _client(catalog_file, generate_backend="a1111", generator_url=url)
        response = client.post("/generate", json={"prompt": PROMPT})
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert "no checkpoint" in detail and "\n" not in detail and PROMPT not in detail


def test_one_image_at_a_time_and_bad_input_refused(catalog_file: Path) -> None:
    probe = _client(catalog_file)
    state = _server_state(probe)
    gate, entered = threading.Event(), threading.Event()
    base = a1111_handler(state)

    class Slow(base):  # type: ignore[valid-type, misc]
        def do_POST(self) -> None:
            entered.set()
            gate.wait(30)
            super().do_POST()

    with serve(Slow) as url:
        client = _client(catalog_file, generate_backend="a1111", generator_url=url)
        first: list[Any] = []
        worker = threading.Thread(
            target=lambda: first.append(client.post("/generate", json={"prompt": PROMPT}))
        )
        worker.start()
        assert entered.wait(30)
        busy = client.post("/generate", json={"prompt": PROMPT})
        gate.set()
        worker.join(30)
        after = client.post("/generate", json={"prompt": PROMPT})
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "10"
    assert first[0].status_code == 200 and after.status_code == 200
    for bad in ({"prompt": PROMPT, "seed": 2**32}, {"prompt": " "}, {"prompt": PROMPT, "steps": 5}):
        response = client.post("/generate", json=bad)
        assert response.status_code == 422 and PROMPT not in response.text


def test_the_generator_needs_the_key_and_a_sound_configuration(
    catalog_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(catalog_file, generate_backend="a1111", api_key="s3cret")
    assert client.post("/generate", json={"prompt": PROMPT}).status_code == 401
    with pytest.raises(UserInputError, match="one of: diffusers, a1111, comfyui"):
        ServiceConfig(generate_backend="midjourney")
    with pytest.raises(UserInputError, match="for the a1111 and comfyui backends"):
        ServiceConfig(generate_backend="diffusers", generator_url="http://127.0.0.1:7860")
    with pytest.raises(UserInputError, match="http:// or https://"):
        ServiceConfig(generate_backend="a1111", generator_url="file:///etc/passwd")
    monkeypatch.setenv("DIFFAGENT_GENERATE", "comfyui")
    monkeypatch.setenv("DIFFAGENT_GENERATOR_URL", "http://127.0.0.1:8188")
    config = ServiceConfig.from_env()
    assert (config.generate_backend, config.generator_url) == ("comfyui", "http://127.0.0.1:8188")


def test_a_diffusers_generator_without_the_extra_is_refused_at_start(
    catalog_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a)
    )
    with pytest.raises(MissingExtra, match=r"diffagent\[diffusers\]"):
        create_app(ReadOnlyStore(catalog_file), ServiceConfig(agent="tfidf", generate_backend="diffusers"))
