"""Build DABench from the catalogue: sample images with their real generation parameters become
instruction -> API call pairs, split without leaks, test pairs marked ``novel``.

Ground truth is only what the data proves: the checkpoint through the image's model hash (AutoV2), LoRAs
through their hash or their exact file name, the parameters from the image. Anything that cannot be
resolved is dropped and counted by reason, never guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from .._io import atomic_open, write_jsonl
from ..catalog import CatalogFilter, Store, compatible, made_with_sql, reported_cfg, validate_call
from ..config import home
from ..schema import APICall, Checkpoint, LoRA, normalize_sampler
from ..textsafety import strip_generator_syntax
from .pairs import SPLITS, Pair, PairSource
from .text import NEAR_DUPLICATE_JACCARD, clean_prompt, group_key, lora_tags, shingles

__all__ = ["BENCH_FILTER", "BenchReport", "build_bench", "ensure_bench", "split_of"]

BENCH_FORMAT = 3
SPLIT_SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}

Progress = Callable[[int, int], None]


@dataclass
class BenchReport:
    images: int = 0
    pairs: dict[str, int] = field(default_factory=dict)
    novel: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    page_only: int = 0
    """Dropped images with a prompt on a checkpoint's own page: no ground truth, but an example of that
    checkpoint for an agent that learns from its pages (the default agent does)."""


@dataclass(frozen=True)
class _Version:
    model_id: int
    version_id: int
    model_name: str
    model_type: str | None
    base_model: str | None
    trained_words: tuple[str, ...]


class _Resolver:
    """Catalogue look-ups for one build: versions by file hash (AutoV2, or AutoV3 as A1111 writes LoRA
    hashes) and LoRA versions by file name."""

    def __init__(self, store: Store, flt: CatalogFilter) -> None:
        where, params = flt.versions_where()
        rows = store.conn.execute(
            f"SELECT v.id, v.model_id, m.name, m.type, v.base_model, v.trained_words "
            f"FROM versions v JOIN models m ON m.id = v.model_id WHERE {where}",
            params,
        )
        self.versions = {r[0]: _Version(r[1], r[0], r[2], r[3], r[4], tuple(json.loads(r[5]))) for r in rows}
        self.by_hash: dict[str, int] = {}
        self.by_autov3: dict[str, int] = {}
        self.lora_by_name: dict[str, set[int]] = defaultdict(set)
        files = store.conn.execute("SELECT version_id, name, autov2, autov3 FROM files")
        for version_id, name, autov2, autov3 in files:
            version = self.versions.get(version_id)
            if version is None:
                continue
            if autov2:
                self.by_hash.setdefault(autov2, version_id)
            if autov3:
                self.by_autov3.setdefault(autov3, version_id)
            if name and version.model_type == "LORA":
                self.lora_by_name[re.sub(r"\.[^.]+$", "", name).lower()].add(version_id)

    def version_by_hash(self, digest: str) -> int | None:
        """The version of a file hash: AutoV3 when it has AutoV3's 12 digits, else AutoV2 (its prefix)."""
        if len(digest) == 12 and digest in self.by_autov3:
            return self.by_autov3[digest]
        return self.by_hash.get(digest[:10])

    def lora(
        self, name: str | None, digest: str | None, page_model: int, version_id: int | None = None
    ) -> int | str:
        """The LoRA version for a resource (by Civitai version id, hash or file name), or the reason it
        cannot be resolved."""
        found: int | None
        if version_id is not None and version_id in self.versions:
            found = version_id
        else:
            found = self.version_by_hash(digest) if digest else None
        if found is not None:
            return found if self.versions[found].model_type == "LORA" else "lora_hash_not_lora"
        candidates = self.lora_by_name.get((name or "").strip().lower(), set())
        if len(candidates) == 1:
            return next(iter(candidates))
        if not candidates:
            return "unresolved_lora"
        on_page = [v for v in candidates if self.versions[v].model_id == page_model]
        return on_page[0] if len(on_page) == 1 else "ambiguous_lora"


def _image_rows(store: Store, flt: CatalogFilter) -> Iterable[tuple]:
    image_where, image_params = flt.images_where("i")
    model_clause = "" if flt.allow_nsfw_models else "AND m.nsfw = 0"
    made, made_params = made_with_sql(flt)  # the checkpoint, resolved within the filter
    return store.conn.execute(
        f"""SELECT i.id, i.model_id, i.version_id, m.type, i.prompt, i.negative_prompt, i.sampler, i.steps,
                   i.cfg_scale, i.seed, COALESCE(i.gen_width, i.width), COALESCE(i.gen_height, i.height),
                   i.clip_skip, made.version_id, made.how, i.resources
            FROM images i JOIN models m ON m.id = i.model_id JOIN ({made}) made ON made.row = i.rowid
            WHERE {image_where} {model_clause} ORDER BY i.id, i.version_id""",
        [*made_params, *image_params],
    )


def _pair_from_row(row: tuple, resolver: _Resolver, store: Store) -> Pair | str:
    """A pair for one image row, or the reason it is dropped."""
    (image_id, model_id, version_id, _page_type, prompt, negative, sampler, steps, cfg, seed, width, height,
     clip_skip, checkpoint_id, made_how, resources) = row  # fmt: skip
    if not prompt:
        return "no_prompt"
    instruction = clean_prompt(prompt)
    if not instruction:
        return "empty_prompt"
    if made_how == "unresolved":  # a hash or Civitai's record names nothing DABench may use
        return "unresolved_checkpoint"
    if checkpoint_id is None:
        return "no_model_hash"
    checkpoint = resolver.versions[checkpoint_id]
    if checkpoint.model_type != "Checkpoint":
        return "hash_not_checkpoint"
    canonical = normalize_sampler(sampler)
    if canonical is None:
        return "unknown_sampler" if sampler else "missing_params"
    if steps is None or cfg is None or width is None or height is None:
        return "missing_params"

    used = json.loads(resources)
    if any(r["type"] == "hypernet" for r in used):
        return "hypernetwork"
    # lower-cased name (or "#version id") -> (hash, weight, version id)
    wanted: dict[str, tuple[str | None, float | None, int | None]] = {}
    for r in used:
        if r["type"] == "lora":
            version = r.get("version_id")
            key = f"#{version}" if version else (r["name"] or r["hash"] or "").lower()
            wanted[key] = (r["hash"], r["weight"], version)
    for name, weight in lora_tags(prompt):
        key = name.strip().lower()
        digest, known, version = wanted.get(key, (None, None, None))
        wanted[key] = (digest, known if known is not None else weight, version)
    loras: dict[int, LoRA] = {}
    for name, (digest, weight, version) in wanted.items():
        found = resolver.lora(None if version else name, digest, model_id, version)
        if isinstance(found, str):
            return found
        lora = resolver.versions[found]
        if not compatible(lora.base_model, checkpoint.base_model):
            return "incompatible_lora"
        loras[found] = LoRA(
            model_id=lora.model_id,
            version_id=lora.version_id,
            name=lora.model_name,
            weight=1.0 if weight is None else round(weight, 3),
            trigger_words=list(lora.trained_words),
        )
    cfg_scale, guidance = reported_cfg(checkpoint.base_model, checkpoint.model_name, float(cfg))
    api = APICall(
        checkpoint=Checkpoint(
            model_id=checkpoint.model_id,
            version_id=checkpoint.version_id,
            name=checkpoint.model_name,
            base_model=checkpoint.base_model or "Other",
        ),
        loras=[loras[k] for k in sorted(loras)],
        prompt=strip_generator_syntax(instruction),  # what a generator may be sent (catalogue text is data)
        negative_prompt=strip_generator_syntax(negative or ""),
        sampler=canonical,
        steps=steps,
        cfg_scale=cfg_scale,
        width=width,
        height=height,
        clip_skip=clip_skip or 1,
        seed=seed if seed is not None and seed >= 0 else -1,
        guidance=guidance,
    )
    if validate_call(store, api):  # the ground truth itself must be executable (sizes, ranges)
        return "invalid_params"
    source = PairSource(model_id=model_id, version_id=version_id, image_id=image_id)
    return Pair(id=f"dab-{image_id}", instruction=instruction, api=api, source=source)


def split_of(instruction: str) -> str:
    """Deterministic split from a hash of the normalised prompt: equal prompts always land together."""
    digest = hashlib.blake2b(group_key(instruction).encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2**64
    edge = 0.0
    for split in SPLITS:
        edge += SPLIT_SHARES[split]
        if point < edge:
            return split
    return SPLITS[-1]


def _shingle_matrix(texts: list[str], vocab: dict[str, int]) -> sparse.csr_matrix:
    rows, cols = [], []
    for row, text in enumerate(texts):
        for gram in shingles(text):
            rows.append(row)
            cols.append(vocab.setdefault(gram, len(vocab)))
    data = np.ones(len(rows), dtype=np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), max(len(vocab), 1)))


def novel_flags(test: list[str], train: list[str], progress: Progress | None = None) -> list[bool]:
    """For each test prompt: True when no train prompt has word-bigram Jaccard >= NEAR_DUPLICATE_JACCARD."""
    vocab: dict[str, int] = {}
    train_m = _shingle_matrix(train, vocab)
    test_m = _shingle_matrix(test, vocab)
    train_m.resize((train_m.shape[0], len(vocab)))
    test_m.resize((test_m.shape[0], len(vocab)))
    train_t = train_m.T.tocsr()
    train_sizes = np.asarray(train_m.sum(axis=1)).ravel()
    flags: list[bool] = []
    chunk = 256
    for start in range(0, len(test), chunk):
        block = test_m[start : start + chunk]
        sizes = np.asarray(block.sum(axis=1)).ravel()
        inter = (block @ train_t).tocsr()
        counts = np.diff(inter.indptr)
        rows = np.repeat(np.arange(block.shape[0]), counts)
        union = sizes[rows] + train_sizes[inter.indices] - inter.data
        jaccard = np.divide(inter.data, union, out=np.zeros_like(inter.data), where=union > 0)
        best = np.zeros(block.shape[0])
        # each row's largest value: its entries are contiguous (ufunc.at took seconds on the real dump)
        filled = counts > 0
        best[filled] = np.maximum.reduceat(jaccard, inter.indptr[:-1][filled])
        flags += (best < NEAR_DUPLICATE_JACCARD).tolist()
        if progress is not None:
            progress(min(start + chunk, len(test)), len(test))
    return flags


_NO_EXAMPLE = frozenset({"no_prompt", "empty_prompt", "missing_params", "unknown_sampler"})
"""Drop reasons that also keep an image from being a page-labelled example (no prompt or settings)."""
BENCH_FILTER = CatalogFilter(rated_safety=False)
"""DABench's selection: Civitai's own flags and ``None`` images, as the DESIGN fixes it."""


def build_bench(
    store: Store,
    out: str | Path,
    flt: CatalogFilter | None = None,
    progress: Progress | None = None,
) -> BenchReport:
    """Write ``train.jsonl``, ``val.jsonl``, ``test.jsonl``, ``card.md`` and ``manifest.json`` to ``out``.

    The same catalogue gives byte-identical files. The ground truth is every image Civitai published as
    safe (``rated_safety`` off): an answer's safety is measured, not the truth's.
    """
    flt = flt or BENCH_FILTER
    out = Path(out)
    resolver = _Resolver(store, flt)
    report = BenchReport()
    splits: dict[str, list[Pair]] = {split: [] for split in SPLITS}
    seen: set[int] = set()
    total = store.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    for done, row in enumerate(_image_rows(store, flt), 1):
        if progress is not None and done % 2000 == 0:
            progress(done, total)
        if row[0] in seen:  # an image shown on several pages counts once
            continue
        seen.add(row[0])
        report.images += 1
        pair = _pair_from_row(row, resolver, store)
        if isinstance(pair, str):
            report.dropped[pair] += 1
            report.page_only += row[3] == "Checkpoint" and bool(row[4]) and pair not in _NO_EXAMPLE
        else:
            splits[split_of(pair.instruction)].append(pair)
    flags = novel_flags([p.instruction for p in splits["test"]], [p.instruction for p in splits["train"]])
    for pair, novel in zip(splits["test"], flags, strict=True):
        pair.novel = novel
    report.novel = sum(flags)
    out.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        report.pairs[split] = len(pairs)
        write_jsonl(out / f"{split}.jsonl", (p.model_dump(exclude_none=True) for p in pairs))
    with atomic_open(out / "card.md") as handle:
        handle.write(dataset_card(splits, report, flt))
    manifest = {
        "format": BENCH_FORMAT,
        "catalog_revision": store.revision,
        "filter": asdict(flt),
        "pairs": report.pairs,
        "novel": report.novel,
        "dropped": dict(sorted(report.dropped.items())),
    }
    with atomic_open(out / "manifest.json") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
    return report


def ensure_bench(store: Store, out: str | Path | None = None, progress: Progress | None = None) -> Path:
    """The default bench folder (``DIFFAGENT_HOME/bench``), built first if missing or older than the store."""
    out = Path(out) if out is not None else home() / "bench"
    manifest = out / "manifest.json"
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        if meta.get("format") == BENCH_FORMAT and meta.get("catalog_revision") == store.revision:
            return out
    build_bench(store, out, progress=progress)
    return out


def _table(title: str, counts: Counter[str] | dict[str, int]) -> list[str]:
    lines = [f"| {title} | pairs |", "|---|---:|"]
    lines += [
        f"| {name} | {count:,} |" for name, count in sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    ]
    return [*lines, ""]


def dataset_card(splits: dict[str, list[Pair]], report: BenchReport, flt: CatalogFilter) -> str:
    """A markdown card: what the pairs are, how they were made, counts by split, base model, sampler, drop."""
    everything = [p for pairs in splits.values() for p in pairs]
    lines = [
        "# DABench (built by diffagent)",
        "",
        "Instruction -> API call pairs from Civitai sample images. Instruction: the image prompt",
        "without resource tags. Ground truth: the checkpoint the image's Civitai resources name (model",
        "version id), else the one its model hash (AutoV2) finds; LoRAs from its resources and",
        "`<lora:...>` tags resolved by version id, hash (AutoV2 / AutoV3) or exact file name, and the",
        "image's own parameters. Unresolvable images are dropped (below), never guessed. Splits are",
        "grouped by normalised prompt (80/10/10 by a hash of it), so no prompt is in two splits; a test",
        "pair is `novel` when no train prompt has a word-bigram Jaccard index of",
        f"{NEAR_DUPLICATE_JACCARD} or more with it.",
        "",
        f"Filter: model types {list(flt.types or [])},"
        f" nsfw models {'in' if flt.allow_nsfw_models else 'out'}, image nsfw levels {list(flt.image_nsfw)}.",
        "",
        f"Images considered: {report.images:,}. Pairs: {len(everything):,}."
        f" Novel test pairs: {report.novel:,}.",
        "",
        f"Examples of two kinds: the pairs above are hash-resolved ground truth; {report.page_only:,} more"
        " dropped images with a prompt and settings hang on a checkpoint's own page and are, for an agent"
        " that learns from pages, examples of that checkpoint (never ground truth).",
        "",
        *_table("split", {split: len(pairs) for split, pairs in splits.items()}),
        *_table("base model", Counter(p.api.checkpoint.base_model for p in everything)),
        *_table("sampler", Counter(p.api.sampler for p in everything)),
        *_table("LoRAs per pair", Counter(str(len(p.api.loras)) for p in everything)),
        *_table("dropped because", report.dropped),
    ]
    return "\n".join(lines)
