"""The catalogue: Civitai models, versions, files and sample images in an embedded SQLite store."""

from .basemodels import compatible, default_size, family, is_few_step
from .crawler import CrawlError, CrawlQuery, CrawlReport, RetryPolicy, crawl
from .filters import CatalogFilter, ModelEntry, latest_versions
from .importer import ImportReport, import_dump
from .meta import GenParams, Resource, normalize_hash, parse_meta
from .search import CardHit, search_cards
from .store import MalformedRecord, Store, VersionRef
from .validate import Problem, check_call, hallucination_reasons, is_hallucination, validate_call

__all__ = [
    "CardHit",
    "CatalogFilter",
    "CrawlError",
    "CrawlQuery",
    "CrawlReport",
    "GenParams",
    "ImportReport",
    "MalformedRecord",
    "ModelEntry",
    "Problem",
    "Resource",
    "RetryPolicy",
    "Store",
    "VersionRef",
    "check_call",
    "compatible",
    "crawl",
    "default_size",
    "family",
    "hallucination_reasons",
    "import_dump",
    "is_few_step",
    "is_hallucination",
    "latest_versions",
    "normalize_hash",
    "parse_meta",
    "search_cards",
    "validate_call",
]
