"""The HTTP service: the same answers as ``diffagent select``, over JSON.

    POST /select        {"prompt": "...", "k": 5, "agent": "default", "format": null, "base_models": []}
                        -> Answer
    POST /select/batch  {"items": [{"id": 1, "prompt": "..."}], "k": 5} -> {"results": [...]}
    GET  /schema        JSON Schema of the API call
    GET  /health        catalogue counts and the agents already loaded

Agents are built once per process on first use and reused; the catalogue is read-only here.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from .agents import AGENT_NAMES, Agent
from .catalog import Store
from .client import open_agent
from .config import store_path
from .errors import UserInputError
from .execute import FORMATS, to_payload
from .schema import Answer, api_json_schema

__all__ = ["create_app"]


class SelectRequest(BaseModel):
    prompt: str = Field(min_length=1, description="the text-to-image prompt")
    k: int = Field(5, ge=1, le=50, description="ranked alternatives to return")
    agent: str = Field("default", description=f"one of: {', '.join(AGENT_NAMES)}")
    format: str | None = Field(None, description=f"also return a generator payload: {', '.join(FORMATS)}")
    base_models: list[str] = Field(
        default_factory=list, max_length=20, description="only checkpoints of these base models or families"
    )


class BatchItem(BaseModel):
    id: str | int
    prompt: str = Field(min_length=1)


class BatchRequest(BaseModel):
    items: list[BatchItem] = Field(min_length=1, max_length=10_000)
    k: int = Field(5, ge=1, le=50)
    agent: str = "default"
    base_models: list[str] = Field(default_factory=list, max_length=20)


_RESTRICTED_AGENTS = 4
"""Default agents kept per distinct ``base_models`` restriction (each holds its own copy of the index)."""


class _Agents:
    """Agents by name (and base-model restriction), built on first request (every bench split is theirs
    to learn from)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.loaded: dict[str, Agent] = {}
        self.restricted: dict[tuple[str, ...], Agent] = {}
        self.lock = threading.Lock()

    def get(self, name: str, base_models: list[str] | None = None) -> Agent:
        if name not in AGENT_NAMES or name == "llm":  # the LLM agent needs a trained model: use the CLI
            raise HTTPException(422, f"unknown agent {name!r}; choose one of the retrieval agents")
        if base_models:
            if name != "default":
                raise HTTPException(422, "base_models restricts the default agent's checkpoints")
            return self._restricted(tuple(base_models))
        with self.lock:
            if name not in self.loaded:
                self.loaded[name] = open_agent(self.store, name)
            return self.loaded[name]

    def _restricted(self, base_models: tuple[str, ...]) -> Agent:
        with self.lock:
            if base_models not in self.restricted:
                try:
                    agent = open_agent(self.store, "default", base_models=base_models)
                except UserInputError as exc:
                    raise HTTPException(422, str(exc)) from None
                if len(self.restricted) >= _RESTRICTED_AGENTS:
                    self.restricted.pop(next(iter(self.restricted)))
                self.restricted[base_models] = agent
            return self.restricted[base_models]


def create_app(store: Store | None = None) -> FastAPI:
    """The FastAPI application over ``store`` (default: the catalogue under ``DIFFAGENT_HOME``)."""
    store = store or Store(store_path())
    store.require_models()
    agents = _Agents(store)
    app = FastAPI(title="diffagent", summary="prompt in, executable text-to-image API call out")
    app.state.store = store

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "catalog": store.stats(), "agents_loaded": sorted(agents.loaded)}

    @app.get("/schema")
    def schema() -> dict[str, Any]:
        return api_json_schema()

    @app.post("/select")
    def select(request: SelectRequest) -> dict[str, Any]:
        if request.format is not None and request.format not in FORMATS:
            raise HTTPException(422, f"format must be one of: {', '.join(FORMATS)}")
        answer: Answer = agents.get(request.agent, request.base_models).select(request.prompt, request.k)
        body = answer.model_dump()
        if request.format is not None:
            api = answer.api
            files = store.primary_files([api.checkpoint.version_id, *(lo.version_id for lo in api.loras)])
            body["payload"] = to_payload(api, request.format, files)
        return body

    @app.post("/select/batch")
    def select_batch(request: BatchRequest) -> dict[str, Any]:
        agent = agents.get(request.agent, request.base_models)
        began = time.perf_counter()
        answers = agent.select_batch([item.prompt for item in request.items], request.k)
        each_ms = (time.perf_counter() - began) * 1000 / len(answers)
        return {
            "results": [
                {
                    "id": item.id,
                    "api": answer.api.model_dump(),
                    "alternatives": [alt.model_dump() for alt in answer.alternatives],
                    "latency_ms": round(each_ms, 3),
                }
                for item, answer in zip(request.items, answers, strict=True)
            ]
        }

    return app
