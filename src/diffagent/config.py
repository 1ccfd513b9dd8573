"""Where diffagent keeps its state: the catalogue store, indexes and trained models."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserInputError

__all__ = ["home", "store_path"]


def home() -> Path:
    """The folder named by ``DIFFAGENT_HOME`` (default ``~/.diffagent``), created on first use."""
    path = Path(os.environ.get("DIFFAGENT_HOME") or Path.home() / ".diffagent").expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"DIFFAGENT_HOME {path} cannot be used as a folder: {exc.strerror}") from None
    return path


def store_path() -> Path:
    return home() / "catalog.sqlite"
