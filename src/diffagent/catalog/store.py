"""The catalogue: an embedded SQLite database of Civitai models, versions, files and sample images.

One row per API object, the parsed fields in columns and the raw record beside them. ``revision`` grows
whenever the content changes, so indexes built from the store know when to rebuild.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from .meta import normalize_hash, parse_meta
from .safety import is_person, nsfw_level

__all__ = ["MalformedRecord", "Store", "VersionRef"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT,
    nsfw INTEGER NOT NULL DEFAULT 0,
    poi INTEGER NOT NULL DEFAULT 0,
    description TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    creator TEXT,
    download_count INTEGER NOT NULL DEFAULT 0,
    favorite_count INTEGER NOT NULL DEFAULT 0,
    comment_count INTEGER NOT NULL DEFAULT 0,
    rating_count INTEGER NOT NULL DEFAULT 0,
    rating REAL,
    content_hash TEXT NOT NULL,
    raw TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT,
    base_model TEXT,
    created_at TEXT,
    trained_words TEXT NOT NULL DEFAULT '[]',
    download_url TEXT,
    download_count INTEGER NOT NULL DEFAULT 0,
    rating REAL,
    raw TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_model ON versions(model_id);
CREATE TABLE IF NOT EXISTS files (
    rowid INTEGER PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
    file_id INTEGER,
    name TEXT,
    type TEXT,
    size_kb REAL,
    format TEXT,
    fp TEXT,
    is_primary INTEGER NOT NULL DEFAULT 0,
    autov2 TEXT,
    sha256 TEXT,
    download_url TEXT
);
CREATE INDEX IF NOT EXISTS files_version ON files(version_id);
CREATE INDEX IF NOT EXISTS files_autov2 ON files(autov2);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER NOT NULL,
    version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
    model_id INTEGER NOT NULL,
    url TEXT,
    nsfw TEXT,
    width INTEGER,
    height INTEGER,
    prompt TEXT,
    negative_prompt TEXT,
    sampler TEXT,
    steps INTEGER,
    cfg_scale REAL,
    seed INTEGER,
    gen_width INTEGER,
    gen_height INTEGER,
    clip_skip INTEGER,
    model_hash TEXT,
    model_name TEXT,
    resources TEXT NOT NULL DEFAULT '[]',
    meta_raw TEXT,
    PRIMARY KEY (version_id, id)
);
CREATE INDEX IF NOT EXISTS images_model ON images(model_id);
CREATE TABLE IF NOT EXISTS model_safety (
    model_id INTEGER PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
    nsfw_level INTEGER NOT NULL,
    person INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT);
CREATE VIRTUAL TABLE IF NOT EXISTS model_fts USING fts5(
    name, tags, trained_words, description, tokenize = 'porter unicode61'
);
"""


@dataclass(frozen=True)
class VersionRef:
    """A catalogue version with what an API call needs to name it."""

    model_id: int
    version_id: int
    model_name: str
    version_name: str | None
    model_type: str | None
    base_model: str | None
    trained_words: tuple[str, ...]


def _content_hash(record: dict[str, Any]) -> str:
    blob = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item.strip() for item in value if isinstance(item, str) and item.strip()]


def _image_nsfw(image: dict[str, Any]) -> str | None:
    """The 2023 API's nsfw string ("None", "Soft", "Mature", "X"), also from today's integer ``nsfwLevel``
    (1 PG, 2 PG-13, 4 R, 8 X, 16 XXX) or a bare boolean, so one filter serves old dumps and live crawls."""
    level, flag = image.get("nsfw"), image.get("nsfwLevel")
    if isinstance(level, str):
        return level
    if isinstance(flag, int) and not isinstance(flag, bool) and flag > 0:
        return "None" if flag == 1 else "Soft" if flag == 2 else "Mature" if flag == 4 else "X"
    if level is False:
        return "None"
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class MalformedRecord(ValueError):
    """A model record without the fields that identify it (an id and a name)."""


class Store:
    """The SQLite catalogue. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(_SCHEMA)
        if self._safety_missing():
            self.refresh_safety()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- writing -------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: a crash inside leaves the store as it was before."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def upsert_model(self, record: dict[str, Any]) -> bool:
        """Insert or replace one raw ``/api/v1/models`` item; returns False when it was already stored as is.

        Raises :class:`MalformedRecord` for an item without an integer id and a name. Versions, files
        and images with missing or mistyped fields are kept with those fields empty.
        """
        if not isinstance(record, dict):
            raise MalformedRecord("record is not a JSON object")
        model_id, name = record.get("id"), record.get("name")
        if not isinstance(model_id, int) or isinstance(model_id, bool) or not isinstance(name, str):
            raise MalformedRecord("record lacks an integer 'id' or a string 'name'")
        digest = _content_hash(record)
        row = self.conn.execute("SELECT content_hash FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is not None and row["content_hash"] == digest:
            return False
        if row is not None:
            self.conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
            self.conn.execute("DELETE FROM model_fts WHERE rowid = ?", (model_id,))
        self._insert_model(model_id, name, record, digest)
        self._bump_revision()
        return True

    def _insert_model(self, model_id: int, name: str, record: dict[str, Any], digest: str) -> None:
        stats = _dict(record.get("stats"))
        tags = _strings(record.get("tags"))
        head = {k: v for k, v in record.items() if k != "modelVersions"}
        self.conn.execute(
            "INSERT INTO models VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                model_id, name, _str(record.get("type")), int(record.get("nsfw") is True),
                int(record.get("poi") is True), _str(record.get("description")), json.dumps(tags),
                _str(_dict(record.get("creator")).get("username")), _int(stats.get("downloadCount")),
                _int(stats.get("favoriteCount")), _int(stats.get("commentCount")),
                _int(stats.get("ratingCount")), _num(stats.get("rating")), digest,
                json.dumps(head, ensure_ascii=False),
            ),
        )  # fmt: skip
        words: list[str] = []
        ratings: list[str | None] = []
        versions = record.get("modelVersions")
        for position, version in enumerate(versions if isinstance(versions, list) else []):
            if isinstance(version, dict) and isinstance(version.get("id"), int):
                words += self._insert_version(model_id, position, version)
                images = version.get("images")
                ratings += (
                    [_image_nsfw(i) for i in images if isinstance(i, dict)]
                    if isinstance(images, list)
                    else []
                )
        level = nsfw_level(
            name, tags, ratings, flagged=record.get("nsfw") is True, api_level=record.get("nsfwLevel")
        )
        self.conn.execute(
            "INSERT OR REPLACE INTO model_safety VALUES (?,?,?)",
            (model_id, level, int(is_person(record.get("poi") is True, tags))),
        )
        self.conn.execute(
            "INSERT INTO model_fts(rowid, name, tags, trained_words, description) VALUES (?,?,?,?,?)",
            (model_id, name, " ".join(tags), " ".join(words), _strip_html(_str(record.get("description")))),
        )

    def _insert_version(self, model_id: int, position: int, version: dict[str, Any]) -> list[str]:
        version_id = version["id"]
        words = _strings(version.get("trainedWords"))
        head = {k: v for k, v in version.items() if k not in ("files", "images")}
        self.conn.execute(
            "INSERT OR REPLACE INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                version_id, model_id, position, _str(version.get("name")), _str(version.get("baseModel")),
                _str(version.get("createdAt")), json.dumps(words), _str(version.get("downloadUrl")),
                _int(_dict(version.get("stats")).get("downloadCount")),
                _num(_dict(version.get("stats")).get("rating")), json.dumps(head, ensure_ascii=False),
            ),
        )  # fmt: skip
        files = version.get("files")
        for item in files if isinstance(files, list) else []:
            if not isinstance(item, dict):
                continue
            hashes, meta = _dict(item.get("hashes")), _dict(item.get("metadata"))
            self.conn.execute(
                "INSERT INTO files (version_id, file_id, name, type, size_kb, format, fp, is_primary,"
                " autov2, sha256, download_url) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    version_id, _int(item.get("id"), None), _str(item.get("name")), _str(item.get("type")),
                    _num(item.get("sizeKB")), _str(meta.get("format")), _str(meta.get("fp")),
                    int(item.get("primary") is True), normalize_hash(hashes.get("AutoV2")),
                    normalize_hash(hashes.get("SHA256")), _str(item.get("downloadUrl")),
                ),
            )  # fmt: skip
        images = version.get("images")
        rows = []
        for image in images if isinstance(images, list) else []:
            if not isinstance(image, dict) or not isinstance(image.get("id"), int):
                continue
            meta = image.get("meta")
            p = parse_meta(meta)
            rows.append(
                (
                    image["id"], version_id, model_id, _str(image.get("url")), _image_nsfw(image),
                    _int(image.get("width"), None), _int(image.get("height"), None), p.prompt,
                    p.negative_prompt, p.sampler, p.steps, p.cfg_scale, p.seed, p.width, p.height,
                    p.clip_skip, p.model_hash, p.model_name,
                    json.dumps([r.__dict__ for r in p.resources]),
                    json.dumps(meta, ensure_ascii=False) if isinstance(meta, dict) else None,
                )
            )  # fmt: skip
        self.conn.executemany(
            "INSERT OR REPLACE INTO images VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
        )
        return words

    def _safety_missing(self) -> bool:
        """A store written before ``model_safety`` existed (or by older code) lacks rows for some models."""
        models = self.conn.execute("SELECT COUNT(*) FROM models").fetchone()[0]
        return models != self.conn.execute("SELECT COUNT(*) FROM model_safety").fetchone()[0]

    def refresh_safety(self) -> int:
        """Recompute every model's NSFW level and real-person flag from the stored rows (see
        :mod:`.safety`); returns how many models were rated. Import does this per model as it goes."""
        ratings: dict[int, list[str | None]] = {}
        for model_id, rating in self.conn.execute("SELECT model_id, nsfw FROM images"):
            ratings.setdefault(model_id, []).append(rating)
        rows = []
        for model_id, name, tags, nsfw, poi, raw in self.conn.execute(
            "SELECT id, name, tags, nsfw, poi, raw FROM models"
        ):
            tag_list = json.loads(tags)
            try:
                api_level = json.loads(raw).get("nsfwLevel")
            except (json.JSONDecodeError, AttributeError):
                api_level = None
            level = nsfw_level(
                name, tag_list, ratings.get(model_id, []), flagged=bool(nsfw), api_level=api_level
            )
            rows.append((model_id, level, int(is_person(bool(poi), tag_list))))
        with self.transaction():
            self.conn.execute("DELETE FROM model_safety")
            self.conn.executemany("INSERT INTO model_safety VALUES (?,?,?)", rows)
        return len(rows)

    def _bump_revision(self) -> None:
        self.conn.execute(
            "INSERT INTO state(key, value) VALUES ('revision', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def get_state(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_state(self, key: str, value: str | None) -> None:
        if value is None:
            self.conn.execute("DELETE FROM state WHERE key = ?", (key,))
        else:
            self.conn.execute(
                "INSERT INTO state(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?",
                (key, value, value),
            )

    # -- reading -------------------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """Grows with every change of content; 0 for an empty store."""
        return int(self.get_state("revision") or 0)

    def is_empty(self) -> bool:
        return self.conn.execute("SELECT 1 FROM models LIMIT 1").fetchone() is None

    def require_models(self) -> None:
        """Raise :class:`UserInputError` saying how to fill the catalogue when it is empty."""
        if self.is_empty():
            raise UserInputError(
                "the catalogue is empty: run `diffagent catalog import PATH` or `make run` first"
            )

    def version_by_hash(self, digest: str) -> VersionRef | None:
        """The version owning a file with this AutoV2 (10 hex digits) or SHA256 (64) hash, any case.

        A longer hash is also matched on its first 10 digits, since AutoV2 is a SHA256 prefix.
        """
        value = normalize_hash(digest)
        if value is None:
            return None
        column, value = ("sha256", value) if len(value) == 64 else ("autov2", value[:10])
        row = self.conn.execute(
            f"SELECT version_id FROM files WHERE {column} = ? ORDER BY is_primary DESC LIMIT 1", (value,)
        ).fetchone()
        return self.version(row["version_id"]) if row else None

    def version(self, version_id: int) -> VersionRef | None:
        row = self.conn.execute(
            "SELECT v.id, v.model_id, v.name AS vname, v.base_model, v.trained_words, m.name, m.type "
            "FROM versions v JOIN models m ON m.id = v.model_id WHERE v.id = ?",
            (version_id,),
        ).fetchone()
        if row is None:
            return None
        return VersionRef(
            model_id=row["model_id"],
            version_id=row["id"],
            model_name=row["name"],
            version_name=row["vname"],
            model_type=row["type"],
            base_model=row["base_model"],
            trained_words=tuple(json.loads(row["trained_words"])),
        )

    def primary_files(self, version_ids: list[int]) -> dict[int, str]:
        """Version id -> file name of its primary model file (generators load models by file name)."""
        marks = ",".join("?" * len(version_ids))
        rows = self.conn.execute(
            f"SELECT version_id, name FROM files WHERE version_id IN ({marks}) AND name IS NOT NULL"
            " ORDER BY is_primary",
            version_ids,
        )
        return {version_id: name for version_id, name in rows}  # primary rows come last and win

    def stats(self) -> dict[str, Any]:
        """Counts in the shape of ``diffagent catalog stats --json`` (by_base_model counts versions)."""

        def count(table: str) -> int:
            return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

        by_type = dict(
            self.conn.execute("SELECT COALESCE(type, '?'), COUNT(*) FROM models GROUP BY 1 ORDER BY 2 DESC")
        )
        by_base = dict(
            self.conn.execute(
                "SELECT COALESCE(base_model, '?'), COUNT(*) FROM versions GROUP BY 1 ORDER BY 2 DESC"
            )
        )
        return {
            "models": count("models"),
            "versions": count("versions"),
            "files": count("files"),
            "images": count("images"),
            "by_type": by_type,
            "by_base_model": by_base,
        }


def _strip_html(text: str | None) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", text)) if text else ""
