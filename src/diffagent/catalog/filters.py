"""Which models, versions and images count, as in DABench's collection: one place, reused everywhere."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import UserInputError
from .families import FAMILIES, family
from .safety import UNSAFE_LEVEL
from .store import Store

__all__ = ["CatalogFilter", "ModelEntry", "base_models_named", "latest_versions", "safety_columns"]


def safety_columns(m: str = "m") -> str:
    """SQL for two columns of a ``models`` alias ``m``: explicit (0/1) and real person (0/1), so that
    indexes built over every model can mask either at query time."""
    return (
        f"({m}.nsfw OR COALESCE((SELECT s.nsfw_level FROM model_safety s WHERE s.model_id = {m}.id), 1)"
        f" >= {UNSAFE_LEVEL}),"
        f" COALESCE((SELECT s.person FROM model_safety s WHERE s.model_id = {m}.id), {m}.poi)"
    )


@dataclass(frozen=True)
class CatalogFilter:
    """Selection of the catalogue. Defaults are the safe ones: no explicit models (by the level
    :mod:`.safety` derives), no real-person models, ``None`` images only."""

    types: tuple[str, ...] | None = ("Checkpoint", "LORA")
    base_models: tuple[str, ...] | None = None
    allow_nsfw_models: bool = False
    allow_poi: bool = False
    rated_safety: bool = True
    """Apply the NSFW level and real-person flag :mod:`.safety` derives (answers); DABench turns it off so
    that its ground truth is every image Civitai published as safe, whatever model made it."""
    image_nsfw: tuple[str, ...] = ("None",)
    require_file: bool = True
    """Keep only versions with a primary file that has hashes and a download URL."""
    version_ids: frozenset[int] | None = None
    """Only these versions (``--installed``: the user's library); None admits every version."""

    def admits(self, version_id: int, base_model: str | None) -> bool:
        """Whether one version passes the version-level parts of the filter (base model, version ids)."""
        return (self.base_models is None or base_model in self.base_models) and (
            self.version_ids is None or version_id in self.version_ids
        )

    def versions_where(self, v: str = "v", m: str = "m") -> tuple[str, list[object]]:
        """SQL condition and parameters on ``versions`` alias ``v`` joined to its ``models`` alias ``m``."""
        clauses: list[str] = []
        params: list[object] = []
        if self.types is not None:
            clauses.append(f"{m}.type IN ({','.join('?' * len(self.types))})")
            params += self.types
        if self.base_models is not None:
            clauses.append(f"{v}.base_model IN ({','.join('?' * len(self.base_models))})")
            params += self.base_models
        if not self.allow_nsfw_models:
            clauses.append(f"{m}.nsfw = 0")
        if self.version_ids is not None:
            clauses.append(
                f"{v}.id IN ({','.join('?' * len(self.version_ids))})" if self.version_ids else "0"
            )
            params += sorted(self.version_ids)
        if not self.allow_nsfw_models and self.rated_safety:
            clauses.append(
                f"NOT EXISTS (SELECT 1 FROM model_safety s WHERE s.model_id = {m}.id"
                f" AND s.nsfw_level >= {UNSAFE_LEVEL})"
            )
        if not self.allow_poi and self.rated_safety:
            clauses.append(
                f"NOT EXISTS (SELECT 1 FROM model_safety s WHERE s.model_id = {m}.id AND s.person = 1)"
            )
        if self.require_file:
            clauses.append(
                f"EXISTS (SELECT 1 FROM files f WHERE f.version_id = {v}.id AND f.is_primary = 1"
                " AND f.autov2 IS NOT NULL AND f.sha256 IS NOT NULL AND f.download_url IS NOT NULL)"
            )
        return " AND ".join(clauses) or "1", params

    def images_where(self, i: str = "i") -> tuple[str, list[object]]:
        """SQL condition on an ``images`` alias ``i`` (image-level nsfw only; join versions for the rest)."""
        return f"{i}.nsfw IN ({','.join('?' * len(self.image_nsfw))})", list(self.image_nsfw)


@dataclass(frozen=True)
class ModelEntry:
    """A model as agents offer it: its newest version that passes a filter, with what ranks it."""

    model_id: int
    version_id: int
    name: str
    version_name: str | None
    type: str | None
    base_model: str | None
    trained_words: tuple[str, ...]
    tags: tuple[str, ...]
    downloads: int


def latest_versions(store: Store, flt: CatalogFilter | None = None) -> list[ModelEntry]:
    """One entry per model, its first-listed (newest) version that passes ``flt``; most downloaded first."""
    flt = flt or CatalogFilter()
    where, args = flt.versions_where()
    inner, inner_args = flt.versions_where("v2", "m2")
    rows = store.conn.execute(
        f"""SELECT m.id, v.id, m.name, v.name, m.type, v.base_model, v.trained_words, m.tags, m.download_count
            FROM models m JOIN versions v ON v.model_id = m.id
            WHERE {where} AND v.position = (
                SELECT MIN(v2.position) FROM versions v2 JOIN models m2 ON m2.id = v2.model_id
                WHERE v2.model_id = m.id AND {inner})
            ORDER BY m.download_count DESC, m.id""",
        [*args, *inner_args],
    )
    return [
        ModelEntry(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), tuple(json.loads(r[7])), r[8])
        for r in rows
    ]


def base_models_named(store: Store, names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The catalogue's ``baseModel`` strings that ``names`` ask for: a string itself (any case), or every
    string of a family named by its family name (``Pony``, ``Illustrious``, ``SDXL``, ``Flux1`` ...).

    A name that matches nothing in the catalogue is a one-line error listing what is there.
    """
    present = [row[0] for row in store.conn.execute("SELECT DISTINCT base_model FROM versions") if row[0]]
    families = {name.lower(): name for name in FAMILIES}
    out: list[str] = []
    for name in names:
        wanted = " ".join(name.split()).lower()
        whole = families.get(wanted)
        found = [b for b in present if b.lower() == wanted or (whole is not None and family(b) == whole)]
        if not found:
            known = ", ".join(sorted(present)[:30]) or "none"
            raise UserInputError(
                f"the base-model filter names {name!r}, which no catalogue version has; present: {known}"
            )
        out += [b for b in found if b not in out]
    return tuple(out)
