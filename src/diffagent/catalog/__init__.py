"""The catalogue: Civitai models, versions, files and sample images in an embedded SQLite store."""

from .basemodels import compatible, default_size, family, is_few_step
from .filters import CatalogFilter
from .importer import ImportReport, import_dump
from .meta import GenParams, Resource, normalize_hash, parse_meta
from .search import CardHit, search_cards
from .store import MalformedRecord, Store, VersionRef

__all__ = [
    "CardHit",
    "CatalogFilter",
    "GenParams",
    "ImportReport",
    "MalformedRecord",
    "Resource",
    "Store",
    "VersionRef",
    "compatible",
    "default_size",
    "family",
    "import_dump",
    "is_few_step",
    "normalize_hash",
    "parse_meta",
    "search_cards",
]
