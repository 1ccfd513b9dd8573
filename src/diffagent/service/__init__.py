"""The HTTP service and its web page.

Run it with ``diffagent serve``, or ``uvicorn --factory diffagent.service:app_factory``.
"""

from .app import SERVED_AGENTS, app_factory, create_app
from .config import ServiceConfig
from .pool import AgentKey, AgentPool
from .readonly import ReadOnlyStore
from .server import run_server

__all__ = [
    "SERVED_AGENTS",
    "AgentKey",
    "AgentPool",
    "ReadOnlyStore",
    "ServiceConfig",
    "app_factory",
    "create_app",
    "run_server",
]
