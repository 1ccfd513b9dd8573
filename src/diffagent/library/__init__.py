"""The user's own model files: scanned, hashed, matched to the catalogue by hash; verified downloads."""

from .download import DownloadError, download_version
from .hashing import FileHashes, hash_file
from .index import MODEL_SUFFIXES, InstalledFile, Library, ScanReport
from .lookup import lookup_hashes

__all__ = [
    "MODEL_SUFFIXES",
    "DownloadError",
    "FileHashes",
    "InstalledFile",
    "Library",
    "ScanReport",
    "download_version",
    "hash_file",
    "lookup_hashes",
]
