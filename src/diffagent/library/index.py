"""The user's model library: every model file under the folders they point at, hashed once and matched
to catalogue versions by hash, whatever the file is called.

Hashes are cached in ``DIFFAGENT_HOME/library.sqlite`` keyed by path, size and modification time, so a
rescan of a large library reads no file that did not change. Matches are looked up in the catalogue
each time (the catalogue may have grown since the scan).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog import Store, VersionRef, is_model_file
from ..config import home
from ..errors import UserInputError
from .hashing import FileHashes, hash_file

__all__ = ["MODEL_SUFFIXES", "InstalledFile", "Library", "ScanReport"]

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    autov3 TEXT,
    hashed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
"""


@dataclass(frozen=True)
class InstalledFile:
    """A model file in the library, with the catalogue version it is (None when unknown)."""

    path: Path
    size: int
    hashes: FileHashes
    version: VersionRef | None
    file_type: str | None = None
    """Civitai's type of the catalogue file it matched: ``Model`` for the model itself, else ``VAE``,
    ``Config``... (a checkpoint's VAE is listed among its version's files)."""

    @property
    def is_model(self) -> bool:
        """It is the version's model itself, not a VAE or config published with it."""
        return self.version is not None and is_model_file(self.file_type)

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "path": str(self.path),
            "size": self.size,
            "sha256": self.hashes.sha256,
            "autov2": self.hashes.autov2,
            "autov3": self.hashes.autov3,
        }
        if self.version is not None:
            v = self.version
            item.update(
                model_id=v.model_id, version_id=v.version_id, name=v.model_name, version=v.version_name,
                type=v.model_type, base_model=v.base_model,
            )  # fmt: skip
            if self.file_type is not None:
                item["file_type"] = self.file_type
        return item


@dataclass(frozen=True)
class ScanReport:
    """What ``library scan`` prints: how many files, which matched the catalogue, which did not."""

    files: list[InstalledFile]
    hashed: int
    """Files read this time (the rest came from the cache)."""
    hashed_bytes: int

    @property
    def matched(self) -> list[InstalledFile]:
        return [f for f in self.files if f.version is not None]

    @property
    def unknown(self) -> list[InstalledFile]:
        return [f for f in self.files if f.version is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "matched": [f.to_json() for f in self.matched],
            "unknown": [f.to_json() for f in self.unknown],
        }


def _model_files(roots: Sequence[Path]) -> list[Path]:
    found: dict[Path, None] = {}
    for root in roots:
        if not root.is_dir():
            raise UserInputError(f"not a folder: {root}")
        for folder, _dirs, names in os.walk(root, followlinks=False):
            for name in sorted(names):
                path = Path(folder, name)
                if path.suffix.lower() in MODEL_SUFFIXES and not name.startswith(".") and path.is_file():
                    found[path.resolve()] = None
    return sorted(found)


class Library:
    """The hash cache and its matches; use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home() / "library.sqlite"
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        self.conn.executescript(_SCHEMA)

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def scan(
        self,
        roots: Sequence[Path],
        store: Store,
        progress: Callable[[int, int], None] | None = None,
    ) -> ScanReport:
        """Hash (or take from the cache) every model file under ``roots`` and match it to the catalogue;
        files under ``roots`` that are gone are forgotten. ``progress(bytes_done, bytes_total)``."""
        paths = _model_files([Path(r).expanduser() for r in roots])
        cached = {
            row[0]: row[1:]
            for row in self.conn.execute("SELECT path, size, mtime_ns, sha256, autov3 FROM files")
        }
        stats = {path: path.stat() for path in paths}
        stale = [
            p
            for p in paths
            if (cached.get(str(p)) or (None, None))[:2] != (stats[p].st_size, stats[p].st_mtime_ns)
        ]
        total, done = sum(stats[p].st_size for p in stale), 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        self.conn.execute("BEGIN")  # one commit per 100 files, not one per file
        try:
            for number, path in enumerate(stale, 1):
                hashes = hash_file(path, advance)
                stat = stats[path]
                self.conn.execute(
                    "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)",
                    (str(path), stat.st_size, stat.st_mtime_ns, hashes.sha256, hashes.autov3, time.time()),
                )
                if number % 100 == 0:  # what a long first scan hashed survives an interruption
                    self.conn.execute("COMMIT")
                    self.conn.execute("BEGIN")
            self._forget_missing(roots, set(map(str, paths)))
        finally:
            self.conn.execute("COMMIT")
        files = [self._installed(str(p), store) for p in paths]
        return ScanReport([f for f in files if f is not None], len(stale), total)

    def _forget_missing(self, roots: Iterable[Path], present: set[str]) -> None:
        for root in roots:
            prefix = str(Path(root).expanduser().resolve()) + os.sep
            for (path,) in self.conn.execute(
                "SELECT path FROM files WHERE substr(path, 1, ?) = ?", (len(prefix), prefix)
            ).fetchall():
                if path not in present:
                    self.conn.execute("DELETE FROM files WHERE path = ?", (path,))

    def _installed(self, path: str, store: Store) -> InstalledFile | None:
        row = self.conn.execute("SELECT size, sha256, autov3 FROM files WHERE path = ?", (path,)).fetchone()
        if row is None:
            return None
        found = store.file_by_hash(row[1])
        return InstalledFile(
            Path(path),
            row[0],
            FileHashes(row[1], row[2]),
            found.version if found is not None else None,
            found.type if found is not None else None,
        )

    def record(self, path: Path, hashes: FileHashes) -> None:
        """Add a file whose hashes are already known (a verified download) without reading it again."""
        stat = path.stat()
        self.conn.execute(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)",
            (str(path.resolve()), stat.st_size, stat.st_mtime_ns, hashes.sha256, hashes.autov3, time.time()),
        )

    def installed(self, store: Store) -> list[InstalledFile]:
        """Every cached file that is still where it was scanned, matched or not."""
        files = []
        for (path,) in self.conn.execute("SELECT path FROM files ORDER BY path").fetchall():
            if Path(path).is_file():
                item = self._installed(path, store)
                if item is not None:
                    files.append(item)
        return files

    def by_version(self, store: Store) -> dict[int, InstalledFile]:
        """Catalogue version id -> an installed model file of it (what ``--installed`` and ``generate``
        use); a VAE published with a checkpoint is not the checkpoint."""
        return {f.version.version_id: f for f in self.installed(store) if f.is_model and f.version}

    def by_sha256(self) -> dict[str, Path]:
        """SHA256 -> a cached file with that content that is still in place, matched or not (a call's VAE
        is found so, from the library's own hashes: no catalogue look-up)."""
        rows = self.conn.execute("SELECT path, sha256 FROM files ORDER BY path").fetchall()
        return {sha256: Path(path) for path, sha256 in rows if Path(path).is_file()}
