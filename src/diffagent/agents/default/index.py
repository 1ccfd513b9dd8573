"""What the default agent knows: the checkpoints it may name and the example prompts it learns from.

Two halves, both built from the store in seconds and kept together in one cache file:

- :class:`Checkpoints`, every catalogue checkpoint with a usable file (NSFW ones flagged, so that the user's
  filter is a mask at query time, not a rebuild), its versions, popularity, recency and a searchable card
  (name, tags, trigger words, description).
- :class:`Examples`, one entry per image of the DABench pairs the agent is given (never any other image, so
  that evaluation on test never sees a test prompt): the cleaned prompt, the checkpoint it was made with,
  the page it hangs on, its parameters and LoRAs, and a fold number (a hash of the normalised prompt, as
  DABench splits) that lets the ranker learn from features computed without the prompt's own fold.

Prompts are matched by TF-IDF over words and word bigrams, and over their shapes (:func:`prompt_shape`:
writers' habits, which follow them from prompt to prompt; on DABench val, model@5 0.788 -> 0.806). Measured
with the ranker on DABench (novel test model@1): character 3-5-grams added 0.02 but cost 10-25 ms a prompt;
MiniLM (all-MiniLM-L6-v2) neighbours added 0.02 but take 80 ms a prompt and 12 minutes to index the examples
on two shared cores; a static embedding distilled from MiniLM (model2vec-style) added nothing. Words and
shapes keep the agent within its latency and build budgets.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from ..._npz import BUILD_ONLY
from ...bench.build import split_of
from ...bench.pairs import Pair
from ...bench.text import clean_prompt, group_key
from ...catalog import FAMILIES, CatalogFilter, Store, VersionRef, family, is_few_step, safety_columns
from ...catalog.styles import STYLES, prompt_intent, style_profile, tag_styles
from ...catalog.validate import CFG_RANGE, STEPS_RANGE
from ...errors import UserInputError
from ...schema import KNOWN_SAMPLERS, Hires, normalize_sampler
from .params import hires_of, valid_size
from .vectorize import TextVectorizer

__all__ = [
    "FOLDS",
    "SAMPLERS",
    "Checkpoints",
    "Examples",
    "PromptIndex",
    "fold_of",
    "prompt_shape",
    "similarities",
]

FOLDS = 5
"""The ranker learns on each fold with neighbours and centroids taken from the other folds only."""

_UNIVERSE = CatalogFilter(types=("Checkpoint",), allow_nsfw_models=True, allow_poi=True)
_DESCRIPTION_CHARS = 3000  # long descriptions are mostly changelogs and licences


def fold_of(instruction: str) -> int:
    """The fold of a prompt: equal normalised prompts share a fold, like DABench's split."""
    digest = hashlib.blake2b(group_key(instruction).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % FOLDS


def _months(created_at: str | None) -> float:
    """Months since 2000 of an ISO date, 0 when unknown: recency as one number."""
    if not created_at or not re.match(r"^\d{4}-\d{2}", created_at):
        return 0.0
    return (int(created_at[:4]) - 2000) * 12 + int(created_at[5:7]) - 1.0


def _strip_html(text: str | None) -> str:
    return re.sub(r"<[^>]+>", " ", text or "")


@dataclass
class Checkpoints:
    """Every nameable checkpoint model; arrays are indexed by the model's position in ``model_ids``."""

    model_ids: np.ndarray
    versions: Sequence[list[VersionRef]]
    """Usable versions of each model, newest first (Civitai's order)."""
    nsfw: np.ndarray
    """Explicit models (:mod:`diffagent.catalog.safety`), masked out unless NSFW is allowed."""
    person: np.ndarray
    """Real-person likeness models, masked out unless asked for."""
    log_downloads: np.ndarray
    rating: np.ndarray
    recency: np.ndarray
    family_code: np.ndarray
    few_step: np.ndarray
    card_vectorizer: TextVectorizer
    cards: sparse.csr_matrix
    """Terms x models: word TF-IDF of name, tags, trigger words and description (unit columns),
    stored term-major so that ``query @ cards`` needs no conversion per call."""
    name_vectorizer: TextVectorizer
    names: sparse.csr_matrix
    """Terms x models: character n-grams of name and trigger words (``DarahanEyes`` ~ ``darahan eyes``)."""
    claimed_styles: np.ndarray
    """(models, len(STYLES)) 0/1: the styles each model's tags or name claim."""
    styles: np.ndarray | None = None
    """(models, len(STYLES)) style profile: the claims and the clear intents of the agent's own examples
    (:meth:`learn_styles`; never the catalogue's other images, so that no test prompt leaks in)."""
    position: dict[int, int] = field(default_factory=dict)

    fold_styles: np.ndarray | None = field(default=None, metadata=BUILD_ONLY)
    """(FOLDS, models, len(STYLES)): the same profiles without each fold's examples, for training
    features (a prompt must not shape the profile it is scored against); the build's only."""

    def learn_styles(self, examples: Examples) -> None:
        """Each model's style profile from its claims and its examples' prompts (also without each fold)."""
        counts = np.zeros((FOLDS, len(self), len(STYLES)), dtype=np.float32)
        for model, fold, text in zip(
            examples.model.tolist(), examples.fold.tolist(), examples.texts, strict=True
        ):
            intent = prompt_intent(text)
            if intent is not None:
                counts[fold, model, STYLES.index(intent)] += 1
        total = counts.sum(axis=0)
        self.styles = self._profiles(total)
        self.fold_styles = np.stack([self._profiles(total - counts[f]) for f in range(FOLDS)])

    def _profiles(self, counts: np.ndarray) -> np.ndarray:
        return np.stack(
            [style_profile(claimed, row) for claimed, row in zip(self.claimed_styles, counts, strict=True)]
        ).astype(np.float32)

    def __post_init__(self) -> None:
        self.position = {int(m): i for i, m in enumerate(self.model_ids)}

    def __len__(self) -> int:
        return len(self.model_ids)

    @classmethod
    def build(cls, store: Store) -> Checkpoints:
        where, params = _UNIVERSE.versions_where()
        rows = store.conn.execute(
            f"""SELECT m.id, m.name, {safety_columns()}, m.tags, m.description, m.download_count, m.rating,
                       v.id, v.name, v.base_model, v.created_at, v.trained_words
                FROM versions v JOIN models m ON m.id = v.model_id
                WHERE {where} ORDER BY m.id, v.position""",
            params,
        ).fetchall()
        if not rows:
            raise UserInputError("the catalogue has no checkpoint with a downloadable file")
        by_model: dict[int, list] = {}
        for row in rows:
            by_model.setdefault(row[0], []).append(row)
        model_ids, versions, nsfw, person, downloads, rating, recency, fam, few, cards, names, claims = (
            [] for _ in range(12)
        )
        families = {name: code for code, name in enumerate(FAMILIES)}
        for model_id, group in by_model.items():
            _, name, explicit, real, tag_text, description, download_count, stars = group[0][:8]
            refs = [
                VersionRef(model_id, r[8], name, r[9], "Checkpoint", r[10], tuple(json.loads(r[12])))
                for r in group
            ]
            words = sorted({w for ref in refs for w in ref.trained_words})
            tags = json.loads(tag_text)
            model_ids.append(model_id)
            versions.append(refs)
            nsfw.append(bool(explicit))
            person.append(bool(real))
            downloads.append(math.log1p(download_count or 0))
            rating.append(stars or 0.0)
            recency.append(max(_months(r[11]) for r in group))
            fam.append(families.get(family(refs[0].base_model) or "", len(families)))
            few.append(any(is_few_step(ref.base_model, ref.full_name) for ref in refs))
            label = " ".join([name, *words])
            # name and trigger words twice: they say more about the model than its description does
            cards.append(
                " ".join([label, label, " ".join(tags), _strip_html(description)[:_DESCRIPTION_CHARS]])
            )
            names.append(label)
            claims.append(tag_styles(name, tags))
        card_vectorizer, card_matrix = TextVectorizer.fit(
            cards, sublinear_tf=True, stop_words="english", **_document_cuts(len(cards), 0.3)
        )
        name_vectorizer, name_matrix = TextVectorizer.fit(
            names, sublinear_tf=True, analyzer="char_wb", ngram_range=(4, 5)
        )
        return cls(
            model_ids=np.array(model_ids, dtype=np.int64),
            versions=versions,
            nsfw=np.array(nsfw, dtype=bool),
            person=np.array(person, dtype=bool),
            log_downloads=np.array(downloads, dtype=np.float32),
            rating=np.array(rating, dtype=np.float32),
            recency=np.array(recency, dtype=np.float32),
            family_code=np.array(fam, dtype=np.float32),
            few_step=np.array(few, dtype=bool),
            card_vectorizer=card_vectorizer,
            cards=card_matrix.T.tocsr(),
            name_vectorizer=name_vectorizer,
            names=name_matrix.T.tocsr(),
            claimed_styles=np.array(claims, dtype=np.float32).reshape(-1, len(STYLES)),
        )

    def allowed(self, flt: CatalogFilter) -> np.ndarray:
        """Boolean mask of the models with a version that passes ``flt`` (base models, NSFW, poi)."""
        mask = np.ones(len(self), dtype=bool) if flt.allow_nsfw_models else ~self.nsfw
        if not flt.allow_poi:
            mask &= ~self.person
        if flt.base_models is not None or flt.version_ids is not None:
            mask &= np.array(
                [any(flt.admits(v.version_id, v.base_model) for v in refs) for refs in self.versions]
            )
        return mask

    def version(self, model: int, flt: CatalogFilter, preferred: Sequence[int] = ()) -> VersionRef:
        """The version to name for model index ``model``: the first of ``preferred`` that passes the
        filter, else the newest that does (the caller masked out models with none)."""
        refs = [
            ref for ref in self.versions[model] if flt.admits(ref.version_id, ref.base_model)
        ] or self.versions[model]
        for version_id in preferred:
            for ref in refs:
                if ref.version_id == version_id:
                    return ref
        return refs[0]


_SMALL_CORPUS = 200
"""Below this many documents, terms are kept however rare or common (a small test catalogue)."""


def _document_cuts(documents: int, max_df: float) -> dict[str, Any]:
    """TF-IDF document-frequency cuts: rare terms (one document) and stop-like terms (in more than
    ``max_df`` of them) tell nothing, but in a small corpus they are all there is."""
    if documents < _SMALL_CORPUS:
        return {"min_df": 1, "max_df": 1.0}
    return {"min_df": 2, "max_df": max_df}


def _normalize(matrix: sparse.spmatrix) -> sparse.csr_matrix:
    """Rows scaled to unit length (empty rows stay empty), as float32."""
    matrix = sparse.csr_matrix(matrix, dtype=np.float32)
    lengths = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    lengths[lengths == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / lengths).astype(np.float32) @ matrix)


SAMPLERS: tuple[str, ...] = KNOWN_SAMPLERS
"""Examples store their sampler as an index into this tuple."""


@dataclass
class Examples:
    """The DABench pairs the agent learns from, as arrays in pair order."""

    texts: Sequence[str]
    model: np.ndarray
    """Position of the pair's checkpoint model in :class:`Checkpoints`."""
    version_id: np.ndarray
    page: np.ndarray
    """Model id of the catalogue page the image hangs on (a checkpoint's own page or a LoRA's)."""
    image_id: np.ndarray
    fold: np.ndarray
    sampler: np.ndarray
    """Index into ``SAMPLERS``."""
    steps: np.ndarray
    cfg: np.ndarray
    width: np.ndarray
    height: np.ndarray
    clip_skip: np.ndarray
    size_ok: np.ndarray
    """Whether the example's infotext states its generation size (``Size``; never the file's size, which
    is the upscaled one after hires fix) and a generator takes it as is (multiples of 8 within range)."""
    hires: Sequence[Hires | None]
    """The hires fix the example's infotext records (upscaler and scale), None without one."""
    used_hires: np.ndarray
    """Whether each example has one (the cached ``hires`` decode item by item: most answers need none)."""
    loras: Sequence[tuple[tuple[int, float], ...]]
    """(LoRA version id, weight) of each pair."""
    url: Sequence[str | None]
    kind: np.ndarray
    """0: a DABench pair (the strict ground truth); 1: an image on a checkpoint's page, labelled with it."""
    negative: Sequence[str] = field(default_factory=list, metadata=BUILD_ONLY)
    """The negative prompt of each example: the build sums them up per model (``DefaultIndex.negatives``)."""

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def build(
        cls, store: Store, pairs: Sequence[Pair], checkpoints: Checkpoints, page_examples: bool = True
    ) -> Examples:
        """One entry per image; pairs whose checkpoint is not nameable are left out.

        With ``page_examples``, every other safe image with a prompt and settings that hangs on a
        checkpoint's own page joins as an example of that checkpoint (``kind`` 1), whatever its hash says
        (DABench drops it when the hash is not in the catalogue), but only where its prompt falls in a
        DABench split the pairs come from: evaluated on test, the agent learns from no test prompt.
        """
        sampler_code = {name: i for i, name in enumerate(SAMPLERS)}
        seen: set[int] = set()
        rows: list[tuple] = []
        for pair in pairs:
            image = pair.source.image_id
            if image in seen or pair.api.checkpoint.model_id not in checkpoints.position:
                continue
            if pair.api.sampler not in sampler_code:
                continue
            seen.add(image)
            api = pair.api
            rows.append((
                pair.instruction, api.checkpoint.model_id, api.checkpoint.version_id, pair.source.model_id,
                image, sampler_code[api.sampler], api.steps, api.cfg_scale, api.width, api.height,
                api.clip_skip, api.negative_prompt, tuple((lo.version_id, lo.weight) for lo in api.loras), 0,
            ))  # fmt: skip
        if page_examples and rows:
            rows += _page_rows(
                store, checkpoints, seen, {split_of(p.instruction) for p in pairs}, sampler_code
            )
        urls: dict[int, str | None] = {}
        sizes: dict[int, tuple[int | None, int | None]] = {}
        hires: dict[int, Hires | None] = {}
        ids = [row[4] for row in rows]
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            query = (
                "SELECT id, url, gen_width, gen_height, meta_raw FROM images"
                f" WHERE id IN ({','.join('?' * len(chunk))})"
            )
            for image_id, url, gen_width, gen_height, meta in store.conn.execute(query, chunk):
                urls[image_id] = url
                sizes[image_id] = (gen_width, gen_height)
                hires[image_id] = hires_of(json.loads(meta) if meta else None)
        columns = list(zip(*rows, strict=True)) if rows else [()] * 14
        (
            texts,
            models,
            versions,
            pages,
            _,
            samplers,
            steps,
            cfgs,
            widths,
            heights,
            clips,
            negs,
            loras,
            kinds,
        ) = columns
        return cls(
            texts=list(texts),
            model=np.array([checkpoints.position[m] for m in models], dtype=np.int32),
            version_id=np.array(versions, dtype=np.int64),
            page=np.array(pages, dtype=np.int64),
            image_id=np.array(ids, dtype=np.int64),
            fold=np.array([fold_of(t) for t in texts], dtype=np.int8),
            sampler=np.array(samplers, dtype=np.int16),
            steps=np.array(steps, dtype=np.float32),
            cfg=np.array(cfgs, dtype=np.float32),
            width=np.array(widths, dtype=np.int32),
            height=np.array(heights, dtype=np.int32),
            clip_skip=np.array(clips, dtype=np.int16),
            size_ok=np.array([valid_size(*sizes.get(i, (None, None))) for i in ids], dtype=bool),
            hires=[hires.get(i) for i in ids],
            used_hires=np.array([hires.get(i) is not None for i in ids], dtype=bool),
            negative=list(negs),
            loras=list(loras),
            url=[urls.get(i) for i in ids],
            kind=np.array(kinds, dtype=np.int8),
        )


def _page_rows(
    store: Store,
    checkpoints: Checkpoints,
    seen: set[int],
    splits: set[str],
    sampler_code: dict[str, int],
) -> list[tuple]:
    """Example rows of the safe images on checkpoint pages that the pairs do not hold (see
    :meth:`Examples.build`), in image order; settings a generator would refuse are left out."""
    rows = []
    for (
        image_id,
        model_id,
        version_id,
        prompt,
        negative,
        sampler,
        steps,
        cfg,
        width,
        height,
        clip,
    ) in store.conn.execute(
        """SELECT i.id, i.model_id, i.version_id, i.prompt, i.negative_prompt, i.sampler, i.steps,
                      i.cfg_scale, i.gen_width, i.gen_height, i.clip_skip
               FROM images i JOIN models m ON m.id = i.model_id
               WHERE m.type = 'Checkpoint' AND i.nsfw = 'None' AND i.prompt IS NOT NULL
                 AND i.steps IS NOT NULL AND i.cfg_scale IS NOT NULL
               ORDER BY i.id, i.version_id"""
    ):
        if image_id in seen or model_id not in checkpoints.position:
            continue
        canonical = normalize_sampler(sampler)
        instruction = clean_prompt(prompt)
        if canonical not in sampler_code or not instruction or split_of(instruction) not in splits:
            continue
        if not (STEPS_RANGE[0] <= steps <= STEPS_RANGE[1] and CFG_RANGE[0] <= cfg <= CFG_RANGE[1]):
            continue
        seen.add(image_id)
        ok = valid_size(width, height)
        rows.append((
            instruction, model_id, version_id, model_id, image_id, sampler_code[canonical], steps, cfg,
            width if ok else 0, height if ok else 0, clip or 1, negative or "", (), 1,
        ))  # fmt: skip
    return rows


def similarities(queries: sparse.csr_matrix, by_term: sparse.csr_matrix) -> np.ndarray:
    """(B, examples) dense ``queries @ by_term``, one query at a time: the product of a query's few
    rows of ``by_term`` with its weights writes straight into a dense row, twice as fast as a sparse
    product made dense afterwards (the same sums, in the same order)."""
    out = np.zeros((queries.shape[0], by_term.shape[1]), dtype=np.float32)
    for row in range(queries.shape[0]):
        start, end = queries.indptr[row], queries.indptr[row + 1]
        if end > start:
            out[row] = by_term[queries.indices[start:end]].T @ queries.data[start:end]
    return out


_LOWER, _UPPER, _OTHER = re.compile(r"[a-z]+"), re.compile(r"[A-Z]+"), re.compile(r"[^\x00-\x7f]+")
_SPACES = re.compile(r"\s+")


def prompt_shape(text: str) -> str:
    """How a prompt is written rather than what it says: each run of lower-case letters is ``a``, of
    capitals ``x``, of other scripts ``u``; digits, brackets, weights and separators stay. Writers keep
    their habits (``(x:1.2)``, ``((a))``, ``a,a`` or ``a, a``), and writers keep their checkpoints."""
    return _SPACES.sub(" ", _OTHER.sub("u", _UPPER.sub("x", _LOWER.sub("a", text)))).strip()


@dataclass
class PromptIndex:
    """TF-IDF of the example prompts, with per-model centroids (also without each fold), and TF-IDF of
    their shapes (:func:`prompt_shape`)."""

    vectorizer: TextVectorizer
    by_term: sparse.csr_matrix
    """Transposed document matrix (terms x examples): one sparse product gives every similarity."""
    shapes: TextVectorizer
    shape_by_term: sparse.csr_matrix
    """The same for the shapes: tokens between spaces and their pairs."""
    centroids: sparse.csr_matrix
    """Terms x models: the L2-normalised sum of each model's example vectors."""
    shape_centroids: sparse.csr_matrix
    """Terms x models, of the shapes."""
    fold_centroids: list[sparse.csr_matrix] = field(default_factory=list, metadata=BUILD_ONLY)
    """The centroids without the examples of fold f, for training features (the build's only)."""
    fold_shape_centroids: list[sparse.csr_matrix] = field(default_factory=list, metadata=BUILD_ONLY)
    """The same for the shapes."""

    @classmethod
    def build(cls, examples: Examples, n_models: int) -> PromptIndex:
        cuts = _document_cuts(len(examples), 0.5)
        vectorizer, docs = TextVectorizer.fit(examples.texts, sublinear_tf=True, ngram_range=(1, 2), **cuts)
        shapes, shape_docs = TextVectorizer.fit(
            [prompt_shape(t) for t in examples.texts],
            sublinear_tf=True,
            ngram_range=(1, 2),
            token_pattern=r"\S+",
            **cuts,
        )
        rows = np.arange(len(examples))
        owner = sparse.csr_matrix(
            (np.ones(len(examples), dtype=np.float32), (rows, examples.model)),
            shape=(len(examples), n_models),
        )

        def centroids(docs: sparse.csr_matrix) -> tuple[sparse.csr_matrix, list[sparse.csr_matrix]]:
            sums = (owner.T @ docs).tocsr()
            without = [
                _normalize(sums - owner[examples.fold == f].T @ docs[examples.fold == f])
                for f in range(FOLDS)
            ]
            return _normalize(sums).T.tocsr(), [table.T.tocsr() for table in without]

        word_centroids, fold_centroids = centroids(docs)
        shape_centroids, fold_shapes = centroids(shape_docs)
        return cls(
            vectorizer=vectorizer,
            by_term=docs.T.tocsr(),
            shapes=shapes,
            shape_by_term=shape_docs.T.tocsr(),
            shape_centroids=shape_centroids,
            fold_shape_centroids=fold_shapes,
            centroids=word_centroids,
            fold_centroids=fold_centroids,
        )

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return self.vectorizer.transform(texts)

    def shape_vectors(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """TF-IDF of the texts' shapes (:func:`prompt_shape`)."""
        return self.shapes.transform([prompt_shape(t) for t in texts])
