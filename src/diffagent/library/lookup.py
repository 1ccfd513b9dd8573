"""Civitai's by-hash look-up for library files the local catalogue does not know.

``GET {root}/model-versions/by-hash/{SHA256}`` answers with the version that owns a file, 404 when none
does. Only hashes leave the machine, and only when the user asks (``library scan --online``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import httpx

from .. import __version__
from ..catalog.crawler import DEFAULT_API_URL
from .download import DownloadError

__all__ = ["lookup_hashes"]


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    found = item.get("model")
    model: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "model_id": item.get("modelId"),
        "version_id": item.get("id"),
        "name": model.get("name"),
        "version": item.get("name"),
        "type": model.get("type"),
        "base_model": item.get("baseModel"),
    }


def lookup_hashes(hashes: Iterable[str], client: httpx.Client | None = None) -> dict[str, dict[str, Any]]:
    """SHA256 -> what Civitai says the file is, for each hash it knows (``DIFFAGENT_CIVITAI_URL`` and
    ``CIVITAI_API_TOKEN`` honoured). A network failure is one :class:`DownloadError` line."""
    root = (os.environ.get("DIFFAGENT_CIVITAI_URL") or DEFAULT_API_URL).rstrip("/")
    token = os.environ.get("CIVITAI_API_TOKEN", "").strip()
    headers = {"User-Agent": f"diffagent/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    own = client is None
    client = client or httpx.Client(timeout=30.0, headers=headers, follow_redirects=True)
    found: dict[str, dict[str, Any]] = {}
    try:
        for digest in dict.fromkeys(hashes):
            response = client.get(f"{root}/model-versions/by-hash/{digest}")
            if response.status_code == 404:
                continue
            if response.status_code != 200:
                raise DownloadError(f"HTTP {response.status_code} from the Civitai by-hash look-up")
            found[digest] = _summary(response.json())
    except httpx.TransportError as exc:
        raise DownloadError(
            f"the Civitai by-hash look-up failed ({type(exc).__name__}); scan without --online"
        ) from None
    finally:
        if own:
            client.close()
    return found
