"""The catalogue: Civitai models, versions, files and sample images in an embedded SQLite store."""

from .crawler import CrawlError, CrawlQuery, CrawlReport, RetryPolicy, crawl
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
    size_ok,
    snap_size,
)
from .filters import CatalogFilter, ModelEntry, latest_versions, safety_columns
from .importer import ImportReport, import_dump
from .meta import GenParams, Resource, normalize_hash, parse_meta
from .safety import UNSAFE_LEVEL, asks_explicit, is_person, nsfw_level
from .search import CardHit, search_cards
from .store import MalformedRecord, Store, VersionRef
from .validate import Problem, check_call, hallucination_reasons, is_hallucination, validate_call

__all__ = [
    "FAMILIES",
    "UNSAFE_LEVEL",
    "CardHit",
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
    "is_person",
    "latest_versions",
    "normalize_hash",
    "nsfw_level",
    "parse_meta",
    "recipe",
    "safety_columns",
    "search_cards",
    "size_ok",
    "snap_size",
    "validate_call",
]
