"""``diffagent serve``: the HTTP service and the web page (FastAPI under uvicorn)."""

from __future__ import annotations

import typer

from ..errors import UserInputError
from ._common import console, fail, open_store, progress_bar

__all__ = ["serve_command"]


def serve_command(
    host: str = typer.Option(
        "127.0.0.1", help="address to listen on (0.0.0.0 exposes it: set DIFFAGENT_API_KEY)"
    ),
    port: int = typer.Option(8000, min=1, max=65535, help="port to listen on"),
    workers: int = typer.Option(
        1, min=1, max=64, help="worker processes, each with its own store connection"
    ),
    agent: str = typer.Option("default", help="the agent a request gets when it names none"),
) -> None:
    """Serve the web page at / and POST /select, POST /select/batch, GET /schema, GET /health over HTTP.

    Limits and keys come from the environment: DIFFAGENT_API_KEY (Bearer key required),
    DIFFAGENT_CORS_ORIGINS (comma-separated; CORS is off without it), DIFFAGENT_RATE_LIMIT and
    DIFFAGENT_RATE_BURST (requests per second and burst per client), DIFFAGENT_TRUST_PROXY=1 (rate-limit by
    X-Forwarded-For behind a reverse proxy).
    """
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        fail("serve requires the serve extra: pip install diffagent[serve]")
    from ..client import open_agent
    from ..service import SERVED_AGENTS, AgentKey, ServiceConfig, create_app, run_server

    if agent not in SERVED_AGENTS:
        fail(f"the service offers the agents {', '.join(SERVED_AGENTS)}, not {agent!r}")
    try:
        config = ServiceConfig.from_env(agent=agent)
        # build (or load) the agent before listening, so that the first request does not wait for it; with
        # workers, this fills the cache they load from instead of each building the agent at once
        with progress_bar(f"preparing the {agent} agent (first use builds it)") as update:
            if workers == 1:
                app = create_app(config=config)
                app.state.pool.get(AgentKey(agent), progress=update)
            else:
                app = None
                with open_store() as store:
                    open_agent(store, agent, progress=update)
    except UserInputError as exc:
        fail(str(exc))
    page = f"http://{host}:{port}/"
    console.print(f"diffagent on {page} (API docs at {page}docs, {workers} worker(s))", highlight=False)
    run_server(host, port, workers, config, app)
