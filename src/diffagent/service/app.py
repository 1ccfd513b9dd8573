"""The HTTP service: the same answers as ``diffagent select``, over JSON, and the web page at ``/``.

    GET  /              the page (``/?prompt=...`` answers on load); its files under /static/
    GET  /health        cheap: status, catalogue revision, agents loaded, whether a key is required
    GET  /info          what the page offers: base models of the catalogue, payload formats, limits
    POST /select        {"prompt": "...", "k": 5, "agent": ..., "formats": [...], filters} -> Answer
    POST /select/batch  {"items": [{"id": 1, "prompt": "..."}], "k": 5} -> {"results": [...]}
    POST /generate      /select's body (and "seed") -> {"api", "images": [PNG data URLs], "notes"}, when
                        the service was started with a generator (``diffagent serve --generate BACKEND``)
    GET  /schema        JSON Schema of the API call

Bad input is a 4xx that never echoes the input back (so a 5 MB body cannot come back as a 5 MB error, and
a lone surrogate or NaN cannot break the error's own encoding); a 500 means a bug.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import threading
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..agents import AGENT_NAMES, Agent
from ..catalog import CatalogFilter, Store, latest_versions
from ..config import store_path
from ..errors import UserInputError
from ..execute import FORMATS, SEED_RANGE, to_payload
from ..execute.generate import GenerationError, notes_of, png_with_parameters, resolve_files, run_backend
from ..extras import require
from ..schema import Answer, api_json_schema
from .config import ServiceConfig
from .limits import AccessLog, BearerAuth, BodyLimit, RateLimit
from .pool import AgentKey, AgentPool
from .readonly import ReadOnlyStore

__all__ = ["app_factory", "create_app"]

log = logging.getLogger("diffagent.service")

STATIC = Path(str(resources.files("diffagent.service") / "static"))
SERVED_AGENTS = tuple(name for name in AGENT_NAMES if name != "llm")
"""The LLM agent needs a trained model named on the command line: the service offers the others."""

_PAGE_HEADERS = {
    # the page loads nothing from elsewhere but example images, and sends no prompt in a Referer
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters a prompt has no use for, and that a generator or a terminal could misread."""


def _clean_prompt(value: str, limit: int) -> str:
    if not value.strip():
        raise ValueError("the prompt is empty")
    if len(value) > limit:
        raise ValueError(f"the prompt is longer than {limit:,} characters")
    if _CONTROL.search(value):
        raise ValueError("the prompt holds control characters (only tab and line breaks are allowed)")
    return value


async def _in_thread(func: Any, *args: Any) -> Any:
    """``func(*args)`` on a worker thread, abandoned (left to finish alone) when the request times out."""
    return await to_thread.run_sync(func, *args, abandon_on_cancel=True)


class _Strict(BaseModel):
    """Unknown fields, values of another JSON type (`true` for a number) and strings that are not Unicode
    (a lone surrogate from JSON) are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*")
    @classmethod
    def _unicode(cls, value: Any) -> Any:
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("not valid Unicode (a lone surrogate?)") from None
        return value


class Filters(_Strict):
    """Which checkpoints the answer may name; safe by default."""

    base_models: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="only these base models (e.g. 'SD 1.5'); all if empty",
    )
    allow_nsfw: bool = Field(False, description="allow checkpoints marked NSFW")
    allow_poi: bool = Field(False, description="allow models the catalogue marks as real people")
    installed: bool = Field(False, description="only models of the model library (diffagent library scan)")

    @field_validator("base_models")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.strip() or len(name) > 64 or not name.isprintable():
                raise ValueError("each base model is a printable name of at most 64 characters")
        return sorted(set(value))


class SelectRequest(Filters):
    prompt: str = Field(description="the text-to-image prompt")
    k: int = Field(5, ge=1, le=50, description="ranked alternatives to return")
    agent: str | None = Field(None, description=f"one of: {', '.join(SERVED_AGENTS)}; the service's default")
    format: str | None = Field(None, description=f"also return `payload` for one of: {', '.join(FORMATS)}")
    formats: list[str] = Field(
        default_factory=list, max_length=len(FORMATS), description="`payloads` for these"
    )


class GenerateRequest(SelectRequest):
    seed: int | None = Field(
        None, ge=-1, lt=SEED_RANGE, description="seed (-1 random); the answer's if absent"
    )


class BatchItem(_Strict):
    id: str | int
    prompt: str


class BatchRequest(Filters):
    items: list[BatchItem] = Field(min_length=1)
    k: int = Field(5, ge=1, le=50)
    agent: str | None = None


def _notes(request: Filters, agent: str) -> list[str]:
    """Filters the agent cannot apply, said in the answer rather than silently dropped."""
    notes = []
    if agent != "default" and request.base_models:
        notes.append(f"the {agent} agent takes no base-model filter; it was not applied")
    if agent != "default" and request.installed:
        notes.append(f"the {agent} agent takes no installed-models filter; it was not applied")
    return notes


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field and why, without the input (pydantic's default would echo it back)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", "invalid"))}
        for error in errors[:20]
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _user_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=422)


def _server_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error", exc_info=exc)
    return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)


def _timeout(seconds: float) -> JSONResponse:
    return JSONResponse(
        {"detail": f"no answer within {seconds:g} s (the agent may still be loading); retry shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def create_app(store: Store | None = None, config: ServiceConfig | None = None) -> FastAPI:
    """The application over ``store`` (default: the catalogue under ``DIFFAGENT_HOME``, read-only)."""
    config = config or ServiceConfig.from_env()
    store = store or ReadOnlyStore(store_path())
    store.require_models()
    if config.agent not in SERVED_AGENTS:
        raise UserInputError(f"the service's agent must be one of: {', '.join(SERVED_AGENTS)}")
    if config.generate_backend == "diffusers":
        require("diffusers", "the service's diffusers generator")
    pool = AgentPool(store, max_agents=config.max_agents, revision_check_s=config.revision_check_s)
    app = FastAPI(title="diffagent", summary="prompt in, executable text-to-image API call out")
    app.state.store, app.state.pool, app.state.config = store, pool, config
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UserInputError, _user_error)
    app.add_exception_handler(Exception, _server_error)
    base_models: dict[int, list[dict[str, Any]]] = {}

    def catalog_base_models() -> list[dict[str, Any]]:
        """Base models of the catalogue's (safe) checkpoints, most common first; once per revision."""
        revision = store.revision
        if revision not in base_models:
            entries = latest_versions(store, _CHECKPOINTS)
            counts = Counter(entry.base_model for entry in entries if entry.base_model)
            base_models.clear()
            base_models[revision] = [{"name": n, "checkpoints": c} for n, c in counts.most_common()]
        return base_models[revision]

    def agent_for(request: Filters, name: str | None) -> tuple[str, Agent]:
        name = name or config.agent
        if name not in SERVED_AGENTS:
            raise UserInputError(f"unknown agent; choose one of: {', '.join(SERVED_AGENTS)}")
        known = {entry["name"] for entry in catalog_base_models()} if request.base_models else set()
        if not known.issuperset(request.base_models):  # refused before any agent is built for it
            raise UserInputError("unknown base model; GET /info lists those of the catalogue")
        key = (
            AgentKey(
                name, tuple(request.base_models), request.allow_nsfw, request.allow_poi, request.installed
            )
            if name == "default"
            else AgentKey(name, allow_nsfw=request.allow_nsfw, allow_poi=request.allow_poi)
        )
        return name, pool.get(key)

    def answer_body(answer: Answer, request: SelectRequest, notes: list[str]) -> dict[str, Any]:
        body = answer.model_dump()
        wanted = list(dict.fromkeys([*request.formats, *([request.format] if request.format else [])]))
        if wanted:
            api = answer.api
            named = [
                api.checkpoint.version_id,
                *(lo.version_id for lo in api.loras),
                *(e.version_id for e in api.embeddings or ()),
            ]
            files: dict[int | str, str] = {v: name for v, name in store.primary_files(named).items()}
            payloads = {fmt: to_payload(api, fmt, files) for fmt in wanted}
            if request.format:
                body["payload"] = payloads[request.format]
            if request.formats:
                body["payloads"] = {fmt: payloads[fmt] for fmt in request.formats}
        body["notes"] = notes
        return body

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/health")
    async def health() -> dict[str, Any]:  # on the event loop: answers even when every thread is busy
        return {
            "status": "ok",
            "revision": pool.revision,
            "refreshing": pool.refreshing,
            "agents_loaded": sorted({key.name for key in list(pool.loaded)}),
            "ready": AgentKey(config.agent) in pool.loaded,
            "auth_required": config.api_key is not None,
        }

    @app.get("/info")
    def info() -> dict[str, Any]:
        return {
            "agents": list(SERVED_AGENTS),
            "agent": config.agent,
            "base_models": catalog_base_models(),
            "formats": list(FORMATS),
            "generate": config.generate_backend,
            "limits": {
                "select_body_bytes": config.max_body_bytes,
                "batch_body_bytes": config.max_batch_body_bytes,
                "prompt_chars": config.max_prompt_chars,
                "batch_items": config.max_batch_items,
            },
        }

    @app.get("/schema")
    def schema() -> dict[str, Any]:
        return api_json_schema()

    @app.post("/select")
    async def select(request: SelectRequest) -> dict[str, Any]:
        request.prompt = _checked(request.prompt)
        unknown = [f for f in [*request.formats, request.format] if f is not None and f not in FORMATS]
        if unknown:
            raise UserInputError(f"format must be one of: {', '.join(FORMATS)}")

        def work() -> dict[str, Any]:
            name, agent = agent_for(request, request.agent)
            answer = agent.select(request.prompt, request.k)
            return answer_body(answer, request, _notes(request, name))

        try:
            return await asyncio.wait_for(_in_thread(work), config.request_timeout_s)
        except TimeoutError:
            return _timeout(config.request_timeout_s)  # type: ignore[return-value]

    @app.post("/select/batch")
    async def select_batch(request: BatchRequest, http: Request) -> Any:
        """Answered in chunks; between two chunks the work stops if the client left or time ran out."""
        if len(request.items) > config.max_batch_items:
            raise UserInputError(f"a batch holds at most {config.max_batch_items:,} prompts")
        prompts = []
        for position, item in enumerate(request.items):
            try:
                prompts.append(_checked(item.prompt))
            except UserInputError as exc:
                raise UserInputError(f"items[{position}]: {exc}") from None
        deadline = time.monotonic() + config.request_timeout_s
        try:
            name, agent = await asyncio.wait_for(
                _in_thread(agent_for, request, request.agent), config.request_timeout_s
            )
        except TimeoutError:
            return _timeout(config.request_timeout_s)
        answers: list[Answer] = []
        began = time.perf_counter()
        for start in range(0, len(prompts), config.batch_chunk):
            if await http.is_disconnected():
                log.info("batch abandoned by its client after %d of %d prompts", len(answers), len(prompts))
                return Response(status_code=499)
            if time.monotonic() > deadline:
                return _timeout(config.request_timeout_s)
            chunk = prompts[start : start + config.batch_chunk]
            answers += await _in_thread(agent.select_batch, chunk, request.k)
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
            ],
            "notes": _notes(request, name),
        }

    generating = threading.Lock()  # one image at a time: a generator server runs one job anyway

    @app.post("/generate")
    async def generate(request: GenerateRequest) -> Any:
        """The first answer's call, run on the service's generator; the PNGs carry their parameters."""
        backend = config.generate_backend
        if backend is None:
            raise HTTPException(404, "this service does not generate images (diffagent serve --generate)")
        request.prompt = _checked(request.prompt)

        def work() -> dict[str, Any] | None:
            # taken here, on the thread that releases it: a request cancelled before its thread ran holds none
            if not generating.acquire(blocking=False):
                return None
            try:
                name, agent = agent_for(request, request.agent)
                api = agent.select(request.prompt, 1).api
                if request.seed is not None:
                    api = api.model_copy(update={"seed": request.seed})
                files = resolve_files(store, api)
                images = run_backend(api, backend, files, config.generator_url)
            finally:
                generating.release()  # when the generator is done, even for a request that timed out
            pngs = [png_with_parameters(api, image, files) for image in images]
            return {
                "api": api.model_dump(),
                "images": [f"data:image/png;base64,{base64.b64encode(png).decode()}" for png in pngs],
                "seeds": [image.seed for image in images],
                "notes": [*_notes(request, name), *notes_of(images)],
            }

        try:
            result = await asyncio.wait_for(_in_thread(work), config.generate_timeout_s)
        except TimeoutError:
            detail = f"no image within {config.generate_timeout_s:g} s; the generator may still finish it"
            return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "30"})
        except GenerationError as exc:  # the generator refused or is unreachable: its one line
            return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=502)
        if result is None:
            raise HTTPException(503, "busy with another image; retry shortly", headers={"Retry-After": "10"})
        return result

    def _checked(prompt: str) -> str:
        try:
            return _clean_prompt(prompt, config.max_prompt_chars)
        except ValueError as exc:
            raise UserInputError(str(exc)) from None

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return _wrap(app, config)


_CHECKPOINTS = CatalogFilter(types=("Checkpoint",))


def _wrap(app: FastAPI, config: ServiceConfig) -> FastAPI:
    """The middleware, outermost first: log, CORS, key, rate limit, body limit."""
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(
        BodyLimit,
        limits={"/select/batch": config.max_batch_body_bytes},
        default=config.max_body_bytes,
        timeout_s=config.body_timeout_s,
    )
    if config.rate_per_s > 0:
        app.add_middleware(
            RateLimit,
            rate=config.rate_per_s,
            burst=config.rate_burst,
            trust_forwarded_for=config.trust_forwarded_for,
        )
    if config.api_key is not None:
        app.add_middleware(BearerAuth, key=config.api_key)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(AccessLog)
    return app


def app_factory() -> FastAPI:
    """``uvicorn --factory diffagent.service:app_factory``: one app per worker process, set by the env.

    The worker starts answering at once (``/health`` first) while its agent loads in the background.
    """
    app = create_app()
    key = AgentKey(app.state.config.agent)
    threading.Thread(target=app.state.pool.get, args=(key,), name="diffagent-warm", daemon=True).start()
    return app
