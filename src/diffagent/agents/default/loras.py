"""LoRAs for the default agent: which ones a prompt asks for, which checkpoints they are used with, and
how strongly the community applies them.

A prompt reveals a LoRA by its trigger words (DABench instructions keep them; only ``<lora:...>`` tags are
cleaned out) or by an explicit ``<lora:NAME:W>`` tag a user writes. The examples then say which checkpoints
that LoRA was used with (the LoRAs in their API calls, and the LoRA pages their images hang on): that
co-usage is a ranker feature, and the same tables give each LoRA's usual weight.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ..._npz import BUILD_ONLY
from ...bench.text import lora_tags
from ...catalog import CatalogFilter, Store, VersionRef, compatibility, compatible, safety_columns
from ...catalog.styles import style_phrases
from ...catalog.validate import LORA_WEIGHT_RANGE
from ...filenames import written_stem
from ...schema import LoRA
from .index import FOLDS, Checkpoints, Examples
from .params import activation_words, clamp
from .vectorize import TextVectorizer, strictly_sorted

__all__ = ["LoraIndex", "word_phrase"]

_UNIVERSE = CatalogFilter(types=("LORA",), allow_nsfw_models=True, allow_poi=True)
_MAX_PHRASE_WORDS = 4
_GENERIC_SHARE = 0.003
"""A trigger phrase found in more than this share of example prompts (``masterpiece``) reveals nothing."""
_WORD = re.compile(r"[^\W_]+")
_PARTIAL = 0.5
"""Score factor of a LoRA that runs only partially on the checkpoint (an SDXL LoRA on Pony, as Civitai marks
it): allowed, but behind a LoRA of the checkpoint's own family with the same evidence."""
_SAFE_NAME = re.compile(r"[\w][\w .\-]{0,99}")
"""A LoRA file stem a generator can look up: word characters, spaces, dots and hyphens."""


def word_phrase(text: str) -> str:
    """``text`` as its lower-cased words joined by single spaces (``Ukiyo-e`` -> ``ukiyo e``): the form in
    which trigger words, names and prompts are compared."""
    return " ".join(_WORD.findall(text.lower()))


def _trained_phrases(trained_words: Iterable[str]) -> Iterator[str]:
    """The phrases of a LoRA's trained words, each comma- or line-separated part on its own."""
    return (word_phrase(part) for word in trained_words for part in re.split(r"[,\n]", word))


@dataclass
class LoraIndex:
    """LoRA versions of the catalogue, their trigger phrases and their co-usage with checkpoint models."""

    refs: Sequence[VersionRef]
    """The newest usable version of each LoRA model, in model order."""
    nsfw: np.ndarray
    """Explicit LoRAs (see :mod:`diffagent.catalog.safety`), left out unless NSFW is allowed."""
    person: np.ndarray
    """Real-person likeness LoRAs, left out unless asked for."""
    by_stem: dict[str, int]
    """Lower-cased file name without extension -> position in ``refs`` (unambiguous names only)."""
    by_version: dict[int, int]
    """Any usable LoRA version id -> position of its model in ``refs``."""
    phrases: TextVectorizer
    phrase_loras: sparse.csr_matrix
    """Trigger phrases x LoRAs, each row summing to one (a phrase shared by several LoRAs is split)."""
    cousage: sparse.csr_matrix
    """LoRAs x checkpoint models: share of each LoRA's examples made with each checkpoint."""
    together: dict[tuple[int, int], float]
    """The non-zero entries of ``cousage``, for fast look-ups while answering."""
    weights: dict[int, float]
    """LoRA position -> median weight the examples applied it with."""
    default_weight: float
    by_style: dict[str, list[int]]
    """Named style (:data:`~diffagent.catalog.styles.STYLE_PHRASES`) -> style LoRAs whose name or tags
    name it, most downloaded first."""
    fold_cousage: list[sparse.csr_matrix] = field(default_factory=list, metadata=BUILD_ONLY)
    """``cousage`` without each fold's examples, for training features (the build's only)."""

    @classmethod
    def build(cls, store: Store, checkpoints: Checkpoints, examples: Examples) -> LoraIndex:
        where, params = _UNIVERSE.versions_where()
        rows = store.conn.execute(
            f"""SELECT m.id, m.name, {safety_columns()}, v.id, v.name, v.base_model, v.trained_words,
                       (SELECT f.name FROM files f WHERE f.version_id = v.id AND f.is_primary = 1 LIMIT 1),
                       m.tags, m.download_count
                FROM versions v JOIN models m ON m.id = v.model_id
                WHERE {where} ORDER BY m.id, v.position""",
            params,
        ).fetchall()
        refs: list[VersionRef] = []
        nsfw: list[bool] = []
        person: list[bool] = []
        by_version: dict[int, int] = {}
        by_model: dict[int, int] = {}
        stems: dict[str, set[int]] = defaultdict(set)
        words_of: dict[int, set[str]] = defaultdict(set)
        styled: list[tuple[int, int, str]] = []  # (downloads, position, phrase)
        for (
            model_id,
            name,
            is_nsfw,
            is_real,
            version_id,
            vname,
            base,
            words,
            file_name,
            tags,
            downloads,
        ) in rows:
            if model_id not in by_model:
                tag_list = json.loads(tags)
                if "style" in name.lower() or any("style" in t.lower() for t in tag_list):
                    for phrase in style_phrases(" , ".join([name, *tag_list])):
                        styled.append((downloads or 0, len(refs), phrase))
                by_model[model_id] = len(refs)
                refs.append(
                    VersionRef(model_id, version_id, name, vname, "LORA", base, tuple(json.loads(words)))
                )
                nsfw.append(bool(is_nsfw))
                person.append(bool(is_real))
            position = by_model[model_id]
            by_version[version_id] = position
            words_of[position].update(json.loads(words))
            if file_name:
                stems[written_stem(file_name)].add(position)

        # trigger phrases, without the generic ones the example prompts are full of
        phrase_of: dict[str, set[int]] = defaultdict(set)
        for position, words in words_of.items():
            for said in _trained_phrases(words):
                if len(said) >= 3 and not said.isdigit() and len(said.split()) <= _MAX_PHRASE_WORDS:
                    phrase_of[said].add(position)
        phrases = sorted(phrase_of)
        if examples.texts and phrases:
            share = np.asarray(_matcher(phrases).transform(examples.texts).mean(axis=0)).ravel()
            phrases = [p for p, s in zip(phrases, share, strict=True) if s <= _GENERIC_SHARE]
        counter = _matcher(phrases)
        vocabulary = {phrase: row for row, phrase in enumerate(phrases)}
        rows_, cols, vals = [], [], []
        for phrase, row in dict(vocabulary).items():
            owners = phrase_of.get(phrase, set())
            for position in owners:
                rows_.append(row)
                cols.append(position)
                vals.append(1.0 / len(owners))
        phrase_loras = sparse.csr_matrix(
            (np.array(vals, dtype=np.float32), (rows_, cols)),
            shape=(max(len(vocabulary), 1), max(len(refs), 1)),
        )

        # co-usage: the LoRAs of each example's call, and the LoRA page its image hangs on
        entries: list[tuple[int, int, int]] = []  # (lora, checkpoint model, fold)
        applied: dict[int, list[float]] = defaultdict(list)
        for i in range(len(examples)):
            used = set()
            for version_id, weight in examples.loras[i]:
                found = by_version.get(version_id)
                if found is not None:
                    used.add(found)
                    applied[found].append(weight)
            page = by_model.get(int(examples.page[i]))
            if page is not None:
                used.add(page)
            entries += [(lora, int(examples.model[i]), int(examples.fold[i])) for lora in used]
        shape = (max(len(refs), 1), len(checkpoints))
        cousage = _shares(entries, shape, None)
        fold_cousage = [_shares(entries, shape, f) for f in range(FOLDS)]
        every = [w for ws in applied.values() for w in ws]
        return cls(
            refs=refs,
            nsfw=np.array(nsfw, dtype=bool),
            person=np.array(person, dtype=bool),
            by_stem={stem: next(iter(owners)) for stem, owners in stems.items() if len(owners) == 1},
            by_version=by_version,
            phrases=counter,
            phrase_loras=phrase_loras,
            cousage=cousage,
            fold_cousage=fold_cousage,
            together={(int(a), int(b)): float(v) for a, b, v in zip(*sparse.find(cousage), strict=True)},
            weights={p: round(statistics.median(ws), 2) for p, ws in applied.items()},
            default_weight=round(statistics.median(every), 2) if every else 1.0,
            by_style=_by_style(styled),
        )

    def relevance(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Prompts x LoRAs: how much each prompt's trigger phrases point at each LoRA."""
        return (self.phrases.transform(texts) @ self.phrase_loras).tocsr()

    def checkpoint_votes(self, relevance: sparse.csr_matrix, folds: np.ndarray | None = None) -> np.ndarray:
        """Prompts x checkpoint models: the checkpoints the prompts' LoRAs were used with."""
        if folds is None:
            return (relevance @ self.cousage).toarray()
        out = np.zeros((relevance.shape[0], self.cousage.shape[1]), dtype=np.float32)
        for f in range(FOLDS):
            rows = np.flatnonzero(folds == f)
            if len(rows):
                out[rows] = (relevance[rows] @ self.fold_cousage[f]).toarray()
        return out

    def unknown(self, prompt: str) -> list[str]:
        """The ``<lora:NAME:W>`` tags of a raw prompt that name no catalogue LoRA, rewritten from their
        parsed name and weight (so that only a plain tag, never other syntax, passes through)."""
        out = []
        for name, weight in lora_tags(prompt):
            stem = name.strip()
            if stem.lower() in self.by_stem or not _SAFE_NAME.fullmatch(stem):
                continue
            tag = f"<lora:{stem}:{weight:g}>" if weight is not None else f"<lora:{stem}>"
            if tag not in out:
                out.append(tag)
        return out

    def explicit(self, prompt: str) -> list[tuple[int, float | None]]:
        """LoRAs a raw prompt names with ``<lora:NAME:W>`` tags that the catalogue holds."""
        found = []
        for name, weight in lora_tags(prompt):
            position = self.by_stem.get(name.strip().lower())
            if position is not None and (weight is None or math.isfinite(weight)):
                # a user's weight is kept within what the validator accepts (1e+20 becomes 5)
                found.append((position, None if weight is None else clamp(weight, LORA_WEIGHT_RANGE)))
        return found

    def pick(
        self,
        checkpoint: VersionRef,
        checkpoint_position: int,
        relevance: np.ndarray,
        explicit: Sequence[tuple[int, float | None]],
        from_neighbour: Sequence[int],
        allow_nsfw: bool,
        allow_poi: bool = False,
        limit: int = 3,
        versions: frozenset[int] | None = None,
        styles: Sequence[str] = (),
        prompt: str = "",
    ) -> list[LoRA]:
        """Up to ``limit`` LoRAs for ``checkpoint``, compatible ones only, none when nothing fits.

        First those the prompt names with a tag, then those whose trigger phrases it contains and that the
        examples used with this checkpoint (a trigger phrase alone picks the wrong LoRA more often than
        not: measured on DABench val, precision 0.29 against 0.6 with co-usage), then for each named style
        of ``styles`` the most downloaded style LoRA made for it, then those of a near-duplicate example
        made with the same checkpoint. A LoRA one of whose trained words ``prompt`` already holds adds
        no trigger word (its captions, "music theater" for an architecture LoRA, would only bloat it).
        """
        ranked: dict[int, tuple[float, float | None]] = {}
        for position, weight in explicit:
            ranked.setdefault(position, (10.0, weight))
        for hit in np.flatnonzero(relevance > 0):
            position = int(hit)
            together = self.together.get((position, checkpoint_position), 0.0)
            if together > 0:
                ranked.setdefault(int(position), (1.0 + float(relevance[position]) + together, None))
        for phrase in styles:
            for position in self.by_style.get(phrase, ()):
                ref = self.refs[position]
                allowed = (allow_nsfw or not self.nsfw[position]) and (allow_poi or not self.person[position])
                if allowed and compatibility(ref.base_model, checkpoint.base_model) in ("full", "partial"):
                    ranked.setdefault(position, (0.8, None))  # the prompt names the style: its best LoRA
                    break
        for position in from_neighbour:
            ranked.setdefault(position, (0.5, None))
        if not ranked:
            return []
        said = f" {word_phrase(prompt)} "
        out: list[LoRA] = []
        series: set[str] = set()

        def order(item: tuple[int, tuple[float, float | None]]) -> float:
            partial = compatibility(self.refs[item[0]].base_model, checkpoint.base_model) == "partial"
            return -item[1][0] * (_PARTIAL if partial else 1.0)

        for position, (_, weight) in sorted(ranked.items(), key=order):
            ref = self.refs[position]
            stem = _series(ref.model_name)
            if stem in series:
                continue  # one LoRA of a series (XSarchitectural-1, -9, -11 ...): they do the same thing
            if (self.nsfw[position] and not allow_nsfw) or (self.person[position] and not allow_poi):
                continue
            if versions is not None and ref.version_id not in versions:
                continue  # --installed: only LoRAs the user has
            if not compatible(ref.base_model, checkpoint.base_model):
                continue
            series.add(stem)
            out.append(
                LoRA(
                    model_id=ref.model_id,
                    version_id=ref.version_id,
                    name=ref.model_name.strip(),
                    weight=float(
                        self.weights.get(position, self.default_weight) if weight is None else weight
                    ),
                    trigger_words=[]
                    if _said(said, ref.trained_words)
                    else activation_words(ref.trained_words),
                )
            )
            if len(out) == limit:
                break
        return out


def _said(said: str, trained_words: Sequence[str]) -> bool:
    """Whether ``said`` (a prompt as `` phrase ``) holds one of the trained words' comma-separated parts."""
    return any(f" {part} " in said for part in _trained_phrases(trained_words) if len(part) >= 3)


def _series(name: str) -> str:
    """The first word of a LoRA's name, lower-cased: what the LoRAs of one series share."""
    words = _WORD.findall(name.lower())
    return words[0] if words else name.lower()


def _by_style(styled: list[tuple[int, int, str]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for _, position, phrase in sorted(styled, key=lambda item: (-item[0], item[1])):
        out[phrase].append(position)
    return dict(out)


def _matcher(phrases: list[str]) -> TextVectorizer:
    """Finds which of ``phrases`` (lower-cased words joined by spaces) occur in a text."""
    terms = list(phrases) or ["\x00"]
    return TextVectorizer(
        terms=terms,
        idf=None,
        analyzer="word",
        ngram_range=(1, _MAX_PHRASE_WORDS),
        token_pattern=r"[^\W_]+",
        stop_words=[],
        sublinear_tf=False,
        binary=True,
        norm=None,
        terms_sorted=strictly_sorted(terms),
    )


def _shares(
    entries: list[tuple[int, int, int]], shape: tuple[int, int], without: int | None
) -> sparse.csr_matrix:
    """Row-normalised counts of (LoRA, checkpoint) entries, leaving out fold ``without``."""
    kept = [(a, b) for a, b, f in entries if f != without]
    if not kept:
        return sparse.csr_matrix(shape, dtype=np.float32)
    rows, cols = zip(*kept, strict=True)
    counts = sparse.csr_matrix((np.ones(len(kept), dtype=np.float32), (rows, cols)), shape=shape)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    totals[totals == 0] = 1.0
    return (sparse.diags(1.0 / totals).astype(np.float32) @ counts).tocsr()
