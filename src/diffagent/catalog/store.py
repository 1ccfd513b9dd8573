"""The catalogue: an embedded SQLite database of Civitai models, versions, files and sample images.

One row per API object, the parsed fields in columns and the raw record beside them. ``revision`` grows
whenever the content changes, so indexes built from the store know when to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError, UserInputError
from ..textsafety import is_safe_file_name, strip_control, strip_generator_syntax
from .cards import strip_html
from .meta import normalize_hash, parse_meta
from .nsfw import image_level, model_is_nsfw
from .safety import is_person, nsfw_level

if TYPE_CHECKING:
    from .filters import CatalogFilter

__all__ = [
    "HASH_KINDS",
    "NOT_MODEL_FILES",
    "CatalogFile",
    "MalformedRecord",
    "Store",
    "VersionRef",
    "is_model_file",
    "model_file_sql",
]

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
    download_url TEXT,
    autov1 TEXT,
    autov3 TEXT,
    crc32 TEXT,
    blake3 TEXT
);
CREATE INDEX IF NOT EXISTS files_version ON files(version_id);
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
    checkpoint_version INTEGER,
    PRIMARY KEY (version_id, id)
);
CREATE INDEX IF NOT EXISTS images_model ON images(model_id);
CREATE TABLE IF NOT EXISTS model_safety (
    model_id INTEGER PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
    nsfw_level INTEGER NOT NULL,
    person INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS image_fetches (
    version_id INTEGER PRIMARY KEY REFERENCES versions(id) ON DELETE CASCADE,
    images INTEGER NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS model_fts USING fts5(
    name, tags, trained_words, description, tokenize = 'porter unicode61'
);
"""


# Columns later releases added to tables that older stores already have, and the indexes on them.
_ADDED_COLUMNS = {
    "files": ("autov1 TEXT", "autov3 TEXT", "crc32 TEXT", "blake3 TEXT"),
    "images": ("checkpoint_version INTEGER",),
}
_INDEXES = """
CREATE INDEX IF NOT EXISTS files_autov2 ON files(autov2);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
CREATE INDEX IF NOT EXISTS files_autov1 ON files(autov1);
CREATE INDEX IF NOT EXISTS files_autov3 ON files(autov3);
CREATE INDEX IF NOT EXISTS files_crc32 ON files(crc32);
CREATE INDEX IF NOT EXISTS files_blake3 ON files(blake3);
"""
HASH_KINDS = ("AutoV1", "AutoV2", "AutoV3", "SHA256", "CRC32", "BLAKE3")
"""The file hashes Civitai publishes, each stored in the ``files`` column of its lower-cased name."""
_HASH_COLUMNS: dict[int, tuple[str, ...]] = {8: ("autov1", "crc32"), 10: ("autov2",), 12: ("autov3",),
                                             64: ("sha256", "blake3")}  # fmt: skip


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

    @property
    def full_name(self) -> str:
        """Model and version name together, as a checkpoint is told apart by them (``DreamShaper 8 LCM``)."""
        return f"{self.model_name} {self.version_name or ''}"


NOT_MODEL_FILES = ("VAE", "Config", "Training Data", "Text Encoder", "Archive")
"""Civitai file types a version lists beside the model itself: never the file a generator loads as it."""
_MODEL_FILE_SQL = "COALESCE({type}, '') NOT IN (" + ", ".join(f"'{t}'" for t in NOT_MODEL_FILES) + ")"


def is_model_file(file_type: str | None) -> bool:
    """Whether a file of this Civitai type is the model itself, not a VAE, config or training data."""
    return file_type not in NOT_MODEL_FILES


def model_file_sql(type_column: str = "type") -> str:
    """SQL condition on ``files``: the row is a model file (:func:`is_model_file`)."""
    return _MODEL_FILE_SQL.format(type=type_column)


@dataclass(frozen=True)
class CatalogFile:
    """One file of a catalogue version: the version, its name and Civitai type, its SHA256."""

    version: VersionRef
    name: str | None
    type: str | None
    sha256: str | None

    @property
    def is_model(self) -> bool:
        """The model itself (a checkpoint, LoRA or embedding), not its VAE, config or training data."""
        return is_model_file(self.type)


MADE_WITH = ("resources", "hash", "page")
"""What proves the checkpoint of an image (:func:`made_with_sql`): Civitai's record of the generation, the
image's model hash, or (with neither) the checkpoint page it hangs on. The first two are DABench's strict
ground truth; a page label is weaker (another version's images hang there too)."""


def made_with_sql(flt: CatalogFilter | None = None) -> tuple[str, list[object]]:
    """The one image -> checkpoint rule, as a SELECT with one row per ``images`` row, to join on
    ``made.row = i.rowid``; returns the SQL and its parameters.

    Columns: ``row``; ``version_id``, the version that made the image, of any type (a caller that needs a
    checkpoint checks the type), else NULL; ``how``, one of :data:`MADE_WITH`, or ``unresolved`` (a hash
    or record that names no known version) or ``none`` (nothing says); ``page_version``, the version whose
    page shows the image (the checkpoint-page label, whatever the hash says).

    Civitai's record (``checkpoint_version``) wins; else a model hash, matched against AutoV3 when it has
    AutoV3's 12 digits and found there, else against AutoV2 (its first 10), the first stored file winning;
    else, with neither, the page's version when the page is a checkpoint's. Only versions that pass
    ``flt`` count (every version without one): DABench resolves within its filter.
    """
    clause, params = flt.versions_where("v", "m") if flt is not None else ("1", [])

    def known(version: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM versions v JOIN models m ON m.id = v.model_id"
            f" WHERE v.id = {version} AND {clause})"
        )

    def by_hash(column: str, digest: str) -> str:
        return (
            f"(SELECT f.version_id FROM files f JOIN versions v ON v.id = f.version_id"
            f" JOIN models m ON m.id = v.model_id WHERE f.{column} = {digest} AND {clause}"
            f" ORDER BY f.rowid LIMIT 1)"
        )

    sql = f"""SELECT row, page_version,
       CASE WHEN recorded THEN checkpoint_version WHEN hashed THEN by_hash
            WHEN checkpoint_version IS NULL AND on_checkpoint_page THEN page_version END AS version_id,
       CASE WHEN recorded THEN 'resources'
            WHEN hashed THEN CASE WHEN by_hash IS NULL THEN 'unresolved' ELSE 'hash' END
            WHEN checkpoint_version IS NOT NULL THEN 'unresolved'
            WHEN on_checkpoint_page THEN 'page' ELSE 'none' END AS how
FROM (SELECT i.rowid AS row, i.version_id AS page_version, i.checkpoint_version,
             {known("i.checkpoint_version")} AS recorded,
             COALESCE(i.model_hash, '') != '' AS hashed,
             COALESCE(CASE WHEN length(i.model_hash) = 12 THEN {by_hash("autov3", "i.model_hash")} END,
                      {by_hash("autov2", "substr(i.model_hash, 1, 10)")}) AS by_hash,
             EXISTS (SELECT 1 FROM models pm WHERE pm.id = i.model_id AND pm.type = 'Checkpoint')
                 AND {known("i.version_id")} AS on_checkpoint_page
      FROM images i)"""
    return sql, params * 4


def _content_hash(record: dict[str, Any]) -> str:
    blob = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _is_id(value: Any) -> bool:
    """A Civitai id SQLite can hold: a positive 64-bit integer."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _int(value: Any, default: Any = 0) -> Any:
    ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    return value if ok else default


def _num(value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of 400 digits
        return None
    return number if math.isfinite(number) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _label(value: Any) -> str | None:
    """A short catalogue string shown to users (a type, a base model, a creator): no control characters."""
    return " ".join(strip_control(value).split()) or None if isinstance(value, str) else None


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [text for item in value if isinstance(item, str) and (text := _label(item))]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class MalformedRecord(ValueError):
    """A model record without the fields that identify it (an id and a name); ``str()`` is the reason."""


TEXT_FORMAT = "1"
"""Version of the rules that clean catalogue text on the way in; a store written under older rules is
cleaned once when opened (see :meth:`Store._sanitise_stored_text`)."""

LOCK_TIMEOUT_S = 60.0
"""How long a write waits for another import or crawl to finish before it gives up with one line."""


class Store:
    """The SQLite catalogue. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path = ":memory:", lock_timeout: float = LOCK_TIMEOUT_S) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        self.sanitised: Counter[str] = Counter()
        """Catalogue text neutralised on the way in, by kind (see :mod:`diffagent.textsafety`)."""
        self._inherited: list[sqlite3.Connection] = []
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=lock_timeout
            )
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(_SCHEMA)
            self._add_columns()
            self.conn.executescript(_INDEXES)
            # a random name that moves with the file (unlike its path): caches built on it stay valid
            self.conn.execute(
                "INSERT OR IGNORE INTO state(key, value) VALUES ('identity', ?)", (uuid.uuid4().hex,)
            )
            if self.get_state("text_format") != TEXT_FORMAT:
                self._sanitise_stored_text()
            if self._safety_missing():
                self.refresh_safety()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the catalogue {path}: {_reason(exc)}") from None

    def _add_columns(self) -> None:
        """Bring a store written by an older release up to the current tables (new columns stay empty)."""
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column.split()[0] not in have:
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def reconnect_read_only(self) -> None:
        """Read through a new connection of this process's own (a forked worker's: a SQLite connection must
        not be used across a fork). The inherited one stays open and unused, since closing it in the child
        could disturb the parent's locks; a forked worker ends without closing anything."""
        if self.path is None:
            raise StoreError("an in-memory catalogue cannot be reopened in another process")
        self._inherited.append(self.conn)
        uri = self.path.resolve().as_uri() + "?mode=ro"  # as_uri escapes "?" and "#" in the path
        self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row

    # -- writing -------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: a crash inside leaves the store as it was before.

        Waits up to the lock timeout for another writer (an import or crawl in another process);
        a full disk or a lock that never frees becomes a one-line :class:`StoreError` naming the cause.
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"cannot write the catalogue {self.path or ':memory:'}: {_reason(exc)}"
            ) from None
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:  # SQLite has already rolled back after some errors (disk full)
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                where = self.path or ":memory:"
                raise StoreError(
                    f"cannot write the catalogue {where}: {_reason(exc)}; nothing changed"
                ) from exc
            raise

    def upsert_model(self, record: dict[str, Any]) -> bool:
        """Insert or replace one raw ``/api/v1/models`` item; returns False when it was already stored as is.

        Raises :class:`MalformedRecord` for an item without an integer id and a name. Versions, files
        and images with missing or mistyped fields are kept with those fields empty.
        """
        if not isinstance(record, dict):
            raise MalformedRecord("not a JSON object")
        model_id, raw_name = record.get("id"), record.get("name")
        if not isinstance(model_id, int) or isinstance(model_id, bool) or not isinstance(raw_name, str):
            raise MalformedRecord("no integer 'id' or string 'name'")
        if not _is_id(model_id):
            raise MalformedRecord("id out of range")
        name = self._clean_name(raw_name)
        if not name:
            raise MalformedRecord("empty name")
        try:
            digest = _content_hash(record)
        except UnicodeEncodeError:
            raise MalformedRecord("lone surrogate in a string") from None
        except RecursionError:
            raise MalformedRecord("nested too deeply") from None
        row = self.conn.execute("SELECT content_hash FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is not None and row["content_hash"] == digest:
            return False
        if row is not None:
            self.conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
            self.conn.execute("DELETE FROM model_fts WHERE rowid = ?", (model_id,))
        self._insert_model(model_id, name, record, digest)
        self._bump_revision()
        return True

    def _sanitise_stored_text(self) -> None:
        """Apply today's text rules to rows stored before them (names, trigger words, file names), once;
        the revision grows only when something changed, so indexes rebuild exactly then."""
        with self.transaction():
            changed_models: set[int] = set()
            for row in self.conn.execute("SELECT id, name FROM models").fetchall():
                name = self._clean_name(row["name"])
                if name and name != row["name"]:
                    self.conn.execute("UPDATE models SET name = ? WHERE id = ?", (name, row["id"]))
                    changed_models.add(row["id"])
            for row in self.conn.execute("SELECT id, model_id, name, trained_words FROM versions").fetchall():
                name, words = (
                    self._clean_name(row["name"]),
                    self._trigger_words(json.loads(row["trained_words"])),
                )
                if name != row["name"] or json.dumps(words) != row["trained_words"]:
                    self.conn.execute(
                        "UPDATE versions SET name = ?, trained_words = ? WHERE id = ?",
                        (name, json.dumps(words), row["id"]),
                    )
                    changed_models.add(row["model_id"])
            for row in self.conn.execute("SELECT rowid, name FROM files WHERE name IS NOT NULL").fetchall():
                if self._file_name(row["name"]) is None:
                    self.conn.execute("UPDATE files SET name = NULL WHERE rowid = ?", (row["rowid"],))
            for model_id in changed_models:
                words = [
                    w
                    for (raw,) in self.conn.execute(
                        "SELECT trained_words FROM versions WHERE model_id = ? ORDER BY position", (model_id,)
                    )
                    for w in json.loads(raw)
                ]
                name = self.conn.execute("SELECT name FROM models WHERE id = ?", (model_id,)).fetchone()[0]
                self.conn.execute(
                    "UPDATE model_fts SET name = ?, trained_words = ? WHERE rowid = ?",
                    (name, " ".join(words), model_id),
                )
            if self.sanitised or changed_models:
                self._bump_revision()
            self.set_state("text_format", TEXT_FORMAT)
        self.sanitised.clear()

    def _clean_name(self, name: str | None) -> str | None:
        """A model or version name without generator syntax and control characters (counted when changed)."""
        if name is None:
            return None
        clean = strip_generator_syntax(name)
        if clean != " ".join(name.split()):
            self.sanitised["names"] += 1
        return clean or None

    def _trigger_words(self, value: Any) -> list[str]:
        """Trigger words as a prompt may receive them: ``<lora:x:9>`` and control characters removed."""
        words = []
        for word in _strings(value):
            clean = strip_generator_syntax(word)
            if clean != word:
                self.sanitised["trigger words"] += 1
            if clean:
                words.append(clean)
        return words

    def _file_name(self, value: Any) -> str | None:
        """A file name a payload may name, or None (the payload then builds one from the model name)."""
        if not isinstance(value, str):
            return None
        if not is_safe_file_name(value):
            self.sanitised["file names"] += 1
            return None
        return value

    def _insert_model(self, model_id: int, name: str, record: dict[str, Any], digest: str) -> None:
        stats = _dict(record.get("stats"))
        tags = _strings(record.get("tags"))
        head = {k: v for k, v in record.items() if k != "modelVersions"}
        self.conn.execute(
            "INSERT INTO models VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                model_id, name, _label(record.get("type")), int(model_is_nsfw(record)),
                int(record.get("poi") is True), _str(record.get("description")), json.dumps(tags),
                _label(_dict(record.get("creator")).get("username")), _int(stats.get("downloadCount")),
                _int(stats.get("favoriteCount")), _int(stats.get("commentCount")),
                _int(stats.get("ratingCount")), _num(stats.get("rating")), digest,
                json.dumps(head, ensure_ascii=False),
            ),
        )  # fmt: skip
        words: list[str] = []
        ratings: list[str | None] = []
        versions = record.get("modelVersions")
        for position, version in enumerate(versions if isinstance(versions, list) else []):
            if isinstance(version, dict) and _is_id(version.get("id")):
                words += self._insert_version(model_id, position, version)
                images = version.get("images")
                ratings += (
                    [image_level(i) for i in images if isinstance(i, dict)]
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
            (model_id, name, " ".join(tags), " ".join(words), strip_html(_str(record.get("description")))),
        )

    def _insert_version(self, model_id: int, position: int, version: dict[str, Any]) -> list[str]:
        version_id = version["id"]
        words = self._trigger_words(version.get("trainedWords"))
        head = {k: v for k, v in version.items() if k not in ("files", "images")}
        self.conn.execute(
            "INSERT OR REPLACE INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                version_id, model_id, position, self._clean_name(_str(version.get("name"))),
                _label(version.get("baseModel")),
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
            digests = [normalize_hash(hashes.get(kind)) for kind in HASH_KINDS]
            self.conn.execute(
                "INSERT INTO files (version_id, file_id, name, type, size_kb, format, fp, is_primary,"
                " download_url, autov1, autov2, autov3, sha256, crc32, blake3)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    version_id, _int(item.get("id"), None), self._file_name(item.get("name")),
                    _label(item.get("type")),
                    _num(item.get("sizeKB")), _str(meta.get("format")), _str(meta.get("fp")),
                    int(item.get("primary") is True), _str(item.get("downloadUrl")), *digests,
                ),
            )  # fmt: skip
        images = version.get("images")
        self._insert_images(version_id, model_id, images if isinstance(images, list) else [])
        return words

    def _insert_images(self, version_id: int, model_id: int, images: list[Any]) -> int:
        rows = []
        for image in images if isinstance(images, list) else []:
            if not isinstance(image, dict) or not _is_id(image.get("id")):
                continue
            raw_meta: Any = image.get("meta")
            p = parse_meta(raw_meta)
            checkpoint = next((r.version_id for r in p.resources if r.type == "model" and r.version_id), None)
            rows.append(
                (
                    image["id"], version_id, model_id, _str(image.get("url")), image_level(image),
                    _int(image.get("width"), None), _int(image.get("height"), None), p.prompt,
                    p.negative_prompt, p.sampler, p.steps, p.cfg_scale, p.seed, p.width, p.height,
                    p.clip_skip, p.model_hash, p.model_name,
                    json.dumps([r.__dict__ for r in p.resources]),
                    json.dumps(raw_meta, ensure_ascii=False) if isinstance(raw_meta, dict) else None,
                    checkpoint,
                )
            )  # fmt: skip
        self.conn.executemany(
            "INSERT OR REPLACE INTO images VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
        )
        return len(rows)

    def add_images(self, version_id: int, images: list[Any]) -> int:
        """Store raw ``GET /api/v1/images`` items as examples of a stored version; returns how many.

        The version's fetch is recorded (see :meth:`versions_without_examples`) even when no image came,
        so a crawl asks once per version. Replacing the version's model drops both, and asks again.
        """
        row = self.conn.execute("SELECT model_id FROM versions WHERE id = ?", (version_id,)).fetchone()
        if row is None:
            raise UserInputError(f"no version {version_id} in the catalogue to attach images to")
        count = self._insert_images(version_id, row["model_id"], images)
        self.conn.execute("INSERT OR REPLACE INTO image_fetches VALUES (?, ?)", (version_id, count))
        self._bump_revision()
        return count

    def versions_without_examples(self, model_ids: list[int]) -> list[int]:
        """Versions of these models, with files, whose stored images carry no prompt and that were not
        asked for images yet (archived versions without files are skipped: nothing can be run)."""
        if not model_ids:
            return []
        marks = ",".join("?" * len(model_ids))
        rows = self.conn.execute(
            f"""SELECT v.id FROM versions v
                WHERE v.model_id IN ({marks})
                  AND EXISTS (SELECT 1 FROM files f WHERE f.version_id = v.id)
                  AND NOT EXISTS (SELECT 1 FROM images i WHERE i.version_id = v.id AND i.prompt IS NOT NULL)
                  AND NOT EXISTS (SELECT 1 FROM image_fetches g WHERE g.version_id = v.id)
                ORDER BY v.model_id, v.position""",
            model_ids,
        )
        return [row[0] for row in rows]

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
    def identity(self) -> str:
        """A random name given to the store on first use; it moves with the file, unlike its path."""
        return self.get_state("identity") or ""

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
        """The version owning a file with this hash (see :meth:`file_by_hash`)."""
        found = self.file_by_hash(digest)
        return found.version if found is not None else None

    def file_by_hash(self, digest: str) -> CatalogFile | None:
        """The catalogue file with this hash, any case: AutoV1 or CRC32 (8 hex digits), AutoV2 (10),
        AutoV3 (12), SHA256 or BLAKE3 (64); a version's model file before its other files.

        A hash of another length over 10 digits is also matched on its first 10, since AutoV2 is a SHA256
        prefix (AutoV3 is not: it hashes the tensors without the safetensors header).
        """
        value = normalize_hash(digest)
        if value is None:
            return None
        tries = [(column, value) for column in _HASH_COLUMNS.get(len(value), ())]
        if len(value) > 10 and len(value) != 64:
            tries.append(("autov2", value[:10]))
        for column, wanted in tries:
            row = self.conn.execute(
                f"SELECT version_id, name, type, sha256 FROM files WHERE {column} = ?"
                f" ORDER BY {model_file_sql()} DESC, is_primary DESC, rowid LIMIT 1",
                (wanted,),
            ).fetchone()
            if row is not None:
                version = self.version(row["version_id"])
                if version is not None:
                    return CatalogFile(version, row["name"], row["type"], row["sha256"])
        return None

    def files_of(self, version_id: int) -> list[CatalogFile]:
        """Every file the catalogue lists for a version, in its order; empty for an unknown version."""
        ref = self.version(version_id)
        if ref is None:
            return []
        rows = self.conn.execute(
            "SELECT name, type, sha256 FROM files WHERE version_id = ? ORDER BY rowid", (version_id,)
        )
        return [CatalogFile(ref, row["name"], row["type"], row["sha256"]) for row in rows]

    def vae_files(self) -> dict[int, CatalogFile]:
        """Checkpoint version id -> the VAE file it is published with, for the versions that list one
        (the first listed where several are)."""
        rows = self.conn.execute(
            "SELECT f.version_id, f.name, f.sha256 FROM files f JOIN versions v ON v.id = f.version_id"
            " JOIN models m ON m.id = v.model_id"
            " WHERE f.type = 'VAE' AND f.name IS NOT NULL AND m.type = 'Checkpoint' ORDER BY f.rowid DESC"
        ).fetchall()
        found = {row["version_id"]: row for row in rows}  # the first listed comes last and wins
        refs = {v: self.version(v) for v in found}
        return {
            v: CatalogFile(ref, found[v]["name"], "VAE", found[v]["sha256"])
            for v, ref in refs.items()
            if ref is not None
        }

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
        return self._primary_file_column("name", version_ids)

    def primary_sha256(self, version_ids: list[int]) -> dict[int, str]:
        """Version id -> SHA256 of its primary model file, where the catalogue has one."""
        return self._primary_file_column("sha256", version_ids)

    def _primary_file_column(self, column: str, version_ids: list[int]) -> dict[int, str]:
        """Version id -> ``column`` of its primary file, else of another of its model files (never its VAE,
        config or training data) that has it."""
        if column not in ("name", "sha256"):
            raise ValueError(f"not a file column this reads: {column!r}")
        marks = ",".join("?" * len(version_ids))
        rows = self.conn.execute(
            f"SELECT version_id, {column} FROM files WHERE version_id IN ({marks}) AND {column} IS NOT NULL"
            f" AND {model_file_sql()} ORDER BY is_primary",
            version_ids,
        )
        return {version_id: value for version_id, value in rows}  # primary rows come last and win

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


def _reason(exc: BaseException) -> str:
    """SQLite's words for a failure, in a user's terms where they are terse."""
    text = str(exc) or type(exc).__name__
    if "database or disk is full" in text:
        return "the disk is full (free some space and rerun)"
    if "locked" in text or "busy" in text:
        return "another diffagent process (an import or a crawl) is writing it; rerun when it is done"
    return text
