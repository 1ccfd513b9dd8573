"""Running the service under uvicorn: one process or ``workers`` processes, with an idle timeout on every
connection.

uvicorn closes an idle keep-alive connection only after a first response, so a client that connects and
sends nothing (or half a request line) holds a connection for ever. :class:`IdleTimeoutH11` starts the
same timer when the connection opens and stops it only while a request is being answered.
"""

from __future__ import annotations

import asyncio
import copy
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import ServiceConfig

__all__ = ["IdleTimeoutH11", "run_server"]


class IdleTimeoutH11(H11Protocol):
    """uvicorn's h11, closing a connection with no request in progress for ``timeout_keep_alive`` seconds.

    The timer is armed when the connection opens and after each response; bytes that do not complete a
    request (a slow or stalled request line) do not reset it.
    """

    _idle_task: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        self._idle_task = self.loop.call_later(self.timeout_keep_alive, self._idle)

    def _idle(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.timeout_keep_alive_handler()  # closes the connection
        else:
            self._arm()  # a request is being answered: the request timeout governs it


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus diffagent's own loggers (the access log among them) at INFO."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["diffagent"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def run_server(
    host: str, port: int, workers: int = 1, config: ServiceConfig | None = None, app: Any = None
) -> None:
    """Serve until interrupted: ``app`` (default: a new one) in this process, or ``workers > 1`` processes
    that each open the store and build their app through :func:`~diffagent.service.app_factory`."""
    import uvicorn

    config = config or ServiceConfig.from_env()
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "http": IdleTimeoutH11,
        "timeout_keep_alive": max(1, round(config.idle_timeout_s)),
        "limit_concurrency": config.max_concurrency or None,
        "log_config": _log_config(),
        "access_log": False,  # ours (AccessLog) leaves the query string, which may hold a prompt, out
        "proxy_headers": False,
    }
    if workers > 1:
        os.environ["DIFFAGENT_SERVE_AGENT"] = config.agent  # the workers read their settings from the env
        for key, value in (
            ("DIFFAGENT_GENERATE", config.generate_backend),
            ("DIFFAGENT_GENERATOR_URL", config.generator_url),
        ):
            if value is not None:
                os.environ[key] = value
        # a worker imports the stack and opens the store before it answers the supervisor's first ping
        uvicorn.run(
            "diffagent.service:app_factory",
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=60,
            **common,
        )
    else:
        if app is None:
            from .app import create_app

            app = create_app(config=config)
        uvicorn.run(app, **common)
