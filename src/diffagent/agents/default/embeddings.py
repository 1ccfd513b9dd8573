"""Textual-inversion embeddings in negative prompts: kept only where the catalogue holds them.

Community negatives are full of embedding names (``easynegative``, ``bad-hands-5``). A name the generator
does not have is just noise in the prompt, so the consensus negative drops every embedding name except
those of the catalogue's textual inversions (:func:`embedding_words`); an answer then keeps such a name
only where the embedding suits its checkpoint's family and passes the agent's filter (NSFW, real person,
installed files), and lists it in the call's ``embeddings`` so that a generator can load it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ...catalog import CatalogFilter, Store, compatible
from ...catalog.safety import embedding_term, negative_terms
from ...filenames import written_stem
from ...schema import Embedding
from ...textsafety import strip_generator_syntax

__all__ = ["CatalogEmbeddings", "embedding_words"]

_TYPE = "TextualInversion"


def _names(trained_words: str, file_name: str | None) -> set[str]:
    """How prompts name an embedding: its trained words and its file name without the extension."""
    names = {word.strip().lower() for word in json.loads(trained_words or "[]") if isinstance(word, str)}
    if file_name:
        names.add(written_stem(file_name))
    return {name for name in names if name}


_SQL = """SELECT m.id, m.name, v.id, v.base_model, v.trained_words,
                  (SELECT f.name FROM files f WHERE f.version_id = v.id ORDER BY f.is_primary DESC, f.rowid
                   LIMIT 1)
             FROM versions v JOIN models m ON m.id = v.model_id
            WHERE {where} ORDER BY m.download_count DESC, m.id, v.position"""


def embedding_words(store: Store) -> frozenset[str]:
    """Every name (lower-cased) by which a catalogue textual inversion is called, whatever the filter."""
    where, params = CatalogFilter(
        types=(_TYPE,), allow_nsfw_models=True, allow_poi=True, require_file=False
    ).versions_where()
    rows = store.conn.execute(_SQL.format(where=where), params)
    return frozenset(name for *_, words, file_name in rows for name in _names(words, file_name))


@dataclass(frozen=True)
class _Entry:
    embedding: Embedding
    base_model: str | None


class CatalogEmbeddings:
    """The textual inversions an agent may name (its filter's NSFW, poi and installed rules), by name."""

    def __init__(self, store: Store, flt: CatalogFilter) -> None:
        allowed = CatalogFilter(
            types=(_TYPE,),
            allow_nsfw_models=flt.allow_nsfw_models,
            allow_poi=flt.allow_poi,
            version_ids=flt.version_ids,
        )
        where, params = allowed.versions_where()
        self.by_name: dict[str, list[_Entry]] = {}
        self._resolved: dict[tuple[str, str | None], tuple[str, list[Embedding]]] = {}
        """Answers repeat the few thousand consensus negatives: each is read once per family."""
        for model_id, name, version_id, base, words, file_name in store.conn.execute(
            _SQL.format(where=where), params
        ):
            for said in sorted(_names(words, file_name)):
                entry = _Entry(
                    Embedding(
                        model_id=model_id,
                        version_id=version_id,
                        name=strip_generator_syntax(name).strip() or said,
                        trigger_words=[said],
                    ),
                    base,
                )
                self.by_name.setdefault(said, []).append(entry)  # most downloaded first

    def resolve(self, negative: str, base_model: str | None) -> tuple[str, list[Embedding]]:
        """``negative`` (a consensus negative: plain lower-case terms) with the embedding names that no
        allowed embedding for ``base_model`` answers to removed, and the embeddings of the names kept.
        Terms that are not embedding names pass as they are."""
        key = (negative, base_model)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(negative, base_model)
        kept, found = self._resolved[key]
        return kept, list(found)

    def _resolve(self, negative: str, base_model: str | None) -> tuple[str, list[Embedding]]:
        kept: list[str] = []
        found: dict[int, Embedding] = {}
        for term in negative_terms(negative):
            if not embedding_term(term):
                kept.append(term)
                continue
            entry = next(
                (e for e in self.by_name.get(term, ()) if compatible(e.base_model, base_model)), None
            )
            if entry is not None:
                kept.append(term)
                found.setdefault(entry.embedding.version_id, entry.embedding)
        return ", ".join(kept), list(found.values())
