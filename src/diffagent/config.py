"""Where diffagent keeps its state: the catalogue store, indexes and trained models."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["home", "store_path"]


def home() -> Path:
    """The folder named by ``DIFFAGENT_HOME`` (default ``~/.diffagent``), created on first use."""
    path = Path(os.environ.get("DIFFAGENT_HOME") or Path.home() / ".diffagent").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_path() -> Path:
    return home() / "catalog.sqlite"
