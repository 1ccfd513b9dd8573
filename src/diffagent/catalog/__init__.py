"""The catalogue: Civitai models, versions, files and sample images in an embedded SQLite store.

The live crawler (httpx) is imported on first use of its names, so that reading the store stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .crawler import CrawlError, CrawlQuery, CrawlReport, RetryPolicy, crawl, lookup_hash

from .families import (
    FAMILIES,
    Family,
    Recipe,
    architecture,
    compatibility,
    compatible,
    default_size,
    family,
    family_spec,
    is_few_step,
    recipe,
    reported_cfg,
    settle,
    single_file_config,
    size_ok,
    snap_size,
)
from .filters import CatalogFilter, ModelEntry, base_models_named, latest_versions, safety_columns
from .importer import ImportReport, import_dump
from .meta import GenParams, Resource, normalize_hash, parse_meta
from .safety import UNSAFE_LEVEL, asks_explicit, is_person, nsfw_level
from .search import CardHit, search_cards
from .store import (
    MADE_WITH,
    NOT_MODEL_FILES,
    CatalogFile,
    MalformedRecord,
    Store,
    VersionRef,
    is_model_file,
    made_with_sql,
    model_file_sql,
)
from .validate import Problem, check_call, hallucination_reasons, is_hallucination, validate_call

__all__ = [
    "FAMILIES",
    "MADE_WITH",
    "NOT_MODEL_FILES",
    "UNSAFE_LEVEL",
    "CardHit",
    "CatalogFile",
    "CatalogFilter",
    "CrawlError",
    "CrawlQuery",
    "CrawlReport",
    "Family",
    "GenParams",
    "ImportReport",
    "MalformedRecord",
    "ModelEntry",
    "Problem",
    "Recipe",
    "Resource",
    "RetryPolicy",
    "Store",
    "VersionRef",
    "architecture",
    "asks_explicit",
    "base_models_named",
    "check_call",
    "compatibility",
    "compatible",
    "crawl",
    "default_size",
    "family",
    "family_spec",
    "hallucination_reasons",
    "import_dump",
    "is_few_step",
    "is_hallucination",
    "is_model_file",
    "is_person",
    "latest_versions",
    "lookup_hash",
    "made_with_sql",
    "model_file_sql",
    "normalize_hash",
    "nsfw_level",
    "parse_meta",
    "recipe",
    "reported_cfg",
    "safety_columns",
    "search_cards",
    "settle",
    "single_file_config",
    "size_ok",
    "snap_size",
    "validate_call",
]

_LAZY = {
    name: ".crawler"
    for name in ("CrawlError", "CrawlQuery", "CrawlReport", "RetryPolicy", "crawl", "lookup_hash")
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
