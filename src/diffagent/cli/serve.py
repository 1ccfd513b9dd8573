"""``diffagent serve``: the HTTP service and the web page (FastAPI under uvicorn)."""

from __future__ import annotations

import typer

from ..config import store_path
from ..errors import UserInputError
from ..extras import require
from ._common import console, fail, open_store, progress_bar

__all__ = ["serve_command"]


def _fill_cache(agent: str) -> None:
    from ..client import open_agent

    with open_store() as store:
        open_agent(store, agent)


def _fill_cache_in_child(agent: str) -> None:
    """Build the agent's cache under DIFFAGENT_HOME in a process of its own, which then exits."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_fill_cache, args=(agent,))
    child.start()
    child.join()
    if child.exitcode != 0:
        fail(f"preparing the {agent} agent failed (exit code {child.exitcode})")


def serve_command(
    host: str = typer.Option(
        "127.0.0.1", help="address to listen on (0.0.0.0 exposes it: set DIFFAGENT_API_KEY)"
    ),
    port: int = typer.Option(8000, min=1, max=65535, help="port to listen on"),
    workers: int = typer.Option(
        1, min=1, max=64, help="worker processes, each with its own store connection"
    ),
    agent: str = typer.Option("default", help="the agent a request gets when it names none"),
    generate: str = typer.Option(
        None,
        "--generate",
        help="answer POST /generate (and the page's button) with: a1111, comfyui, diffusers",
    ),
    generator_url: str = typer.Option(
        None, "--generator-url", help="the a1111 / comfyui server (default http://127.0.0.1:7860 / :8188)"
    ),
) -> None:
    """Serve the web page at / and POST /select, POST /select/batch, GET /schema, GET /health over HTTP.

    Limits and keys come from the environment: DIFFAGENT_API_KEY (Bearer key required),
    DIFFAGENT_CORS_ORIGINS (comma-separated; CORS is off without it), DIFFAGENT_RATE_LIMIT and
    DIFFAGENT_RATE_BURST (requests per second and burst per client), DIFFAGENT_TRUST_PROXY=1 (rate-limit by
    X-Forwarded-For behind a reverse proxy). With --generate, POST /generate runs the first answer on that
    generator with the model library's files (diffagent library scan) and returns the PNGs; one at a time.
    """
    require("serve", "diffagent serve")
    if generate == "diffusers":  # said before the agent is built, not on the first click
        require("diffusers", "diffagent serve --generate diffusers")
    from ..service import SERVED_AGENTS, AgentKey, ReadOnlyStore, ServiceConfig, create_app, run_server

    if agent not in SERVED_AGENTS:
        fail(f"the service offers the agents {', '.join(SERVED_AGENTS)}, not {agent!r}")
    try:
        chosen = {"generate_backend": generate} if generate else {}
        if generator_url:
            chosen["generator_url"] = generator_url
        config = ServiceConfig.from_env(agent=agent, **chosen)
        # build (or load) the agent before listening, so that the first request does not wait for it; with
        # workers, this fills the cache they load from instead of each building the agent at once
        with progress_bar(f"preparing the {agent} agent (first use builds it)") as update:
            if workers == 1:
                app = create_app(config=config)
                app.state.pool.get(AgentKey(agent), progress=update)
            else:  # in a child process, so that this supervisor does not keep the agent's memory
                app = None
                with ReadOnlyStore(store_path()) as store:
                    store.require_models()
                _fill_cache_in_child(agent)
    except UserInputError as exc:
        fail(str(exc))
    page = f"http://{host}:{port}/"
    console.print(f"diffagent on {page} (API docs at {page}docs, {workers} worker(s))", highlight=False)
    run_server(host, port, workers, config, app)
