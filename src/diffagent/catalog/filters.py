"""Which models, versions and images count, as in DABench's collection: one place, reused everywhere."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CatalogFilter"]


@dataclass(frozen=True)
class CatalogFilter:
    """Selection of the catalogue. Defaults are the safe ones: non-nsfw models, ``None`` images only."""

    types: tuple[str, ...] | None = ("Checkpoint", "LORA")
    base_models: tuple[str, ...] | None = None
    allow_nsfw_models: bool = False
    image_nsfw: tuple[str, ...] = ("None",)
    require_file: bool = True
    """Keep only versions with a primary file that has hashes and a download URL."""

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
        if self.require_file:
            clauses.append(
                f"EXISTS (SELECT 1 FROM files f WHERE f.version_id = {v}.id AND f.is_primary = 1"
                " AND f.autov2 IS NOT NULL AND f.sha256 IS NOT NULL AND f.download_url IS NOT NULL)"
            )
        return " AND ".join(clauses) or "1", params

    def images_where(self, i: str = "i") -> tuple[str, list[object]]:
        """SQL condition on an ``images`` alias ``i`` (image-level nsfw only; join versions for the rest)."""
        return f"{i}.nsfw IN ({','.join('?' * len(self.image_nsfw))})", list(self.image_nsfw)
