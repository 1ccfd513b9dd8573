"""Keyword search over model cards (name, tags, trigger words, description), ranked by SQLite FTS5 BM25."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .filters import CatalogFilter
from .store import Store

__all__ = ["CardHit", "search_cards"]


@dataclass(frozen=True)
class CardHit:
    model_id: int
    version_id: int
    name: str
    type: str | None
    base_model: str | None
    tags: tuple[str, ...]
    downloads: int
    score: float
    """BM25 relevance, higher is better."""


def _match_expression(query: str) -> str | None:
    # Quote every word so that FTS5 operators in user text are taken literally; any word may match.
    words = re.findall(r"\w+", query.lower())
    return " OR ".join(f'"{w}"' for w in words) if words else None


def search_cards(
    store: Store, query: str, limit: int = 20, flt: CatalogFilter | None = None
) -> list[CardHit]:
    """Models whose card matches ``query``, best first, each with its latest version that passes ``flt``."""
    expression = _match_expression(query)
    if expression is None:
        return []
    where, params = (flt or CatalogFilter()).versions_where()
    # The filter is applied inside the ranked query, so a narrow filter still fills ``limit``.
    rows = store.conn.execute(
        f"""
        SELECT m.id, m.name, m.type, m.tags, m.download_count, hits.score, hits.version_id, v.base_model
        FROM (
            SELECT model_fts.rowid AS model_id, -bm25(model_fts, 10.0, 4.0, 4.0, 1.0) AS score,
                   (SELECT v.id FROM versions v JOIN models m ON m.id = v.model_id
                    WHERE v.model_id = model_fts.rowid AND {where} ORDER BY v.position LIMIT 1) AS version_id
            FROM model_fts WHERE model_fts MATCH ?
        ) AS hits
        JOIN models m ON m.id = hits.model_id JOIN versions v ON v.id = hits.version_id
        ORDER BY hits.score DESC LIMIT ?
        """,
        [*params, expression, limit],
    ).fetchall()
    return [
        CardHit(
            model_id=row["id"],
            version_id=row["version_id"],
            name=row["name"],
            type=row["type"],
            base_model=row["base_model"],
            tags=tuple(json.loads(row["tags"])),
            downloads=row["download_count"],
            score=row["score"],
        )
        for row in rows
    ]
