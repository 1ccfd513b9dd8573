"""``diffagent serve``: the HTTP service (FastAPI under uvicorn)."""

from __future__ import annotations

import typer

from ..extras import require
from ._common import console, shown


def serve_command(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, min=1, max=65535, help="port to listen on"),
) -> None:
    """Serve POST /select, POST /select/batch, GET /schema and GET /health over HTTP."""
    require("serve", "diffagent serve")
    import uvicorn

    from ..service import create_app

    console.print(f"diffagent on http://{shown(host)}:{port} (docs at /docs)", highlight=False)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
