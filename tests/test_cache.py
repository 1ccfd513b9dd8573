"""The default agent's cache: no pickle, equal answers after loading, damage rebuilt, a moved home reused."""

from __future__ import annotations

import dataclasses
import gc
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from diffagent import _npz
from diffagent._npz import CacheError
from diffagent.agents.default.vectorize import TextVectorizer
from diffagent.catalog import VersionRef
from diffagent.schema import Hires
from diffagent.train.ranker import Ranker

TEXTS = [
    "a cozy cabin in a snowy forest at dusk, warm light",
    "portrait of an old fisherman, dramatic lighting, 85mm photo",
    "anime girl, blue hair, school uniform, cherry blossoms",
    "watercolor landscape painting of rolling hills",
    "pixel art castle, 16-bit, retro game sprite",
    "Ä café naïve crème brûlée, 日本語 猫",
    "(masterpiece:1.2), best quality, 1girl, solo <lora:add_detail:0.5>",
    "a cat [/] on a mat",
] * 10  # enough to be stored as one blob


@dataclass
class _Inner:
    values: np.ndarray
    matrix: sparse.csr_matrix
    names: list[str]


@dataclass
class _Tree:
    count: int
    ratio: float
    label: str | None
    inner: _Inner
    refs: list[VersionRef]
    by_id: dict[int, float]
    pairs: dict[tuple[int, int], float]
    nested: list[tuple[tuple[int, float], ...]]
    maybe: list[str | None]
    groups: list[list[VersionRef]]
    lazy_refs: Sequence[VersionRef]
    lazy_hires: Sequence[Hires | None]
    lazy_groups: Sequence[list[VersionRef]]
    lazy_nested: Sequence[Sequence[tuple[int, float]]]
    by_text: dict[str, int]
    derived: dict[str, int] = field(default_factory=dict)
    scratch: list[str] = field(default_factory=list, metadata=_npz.BUILD_ONLY)


@dataclass
class _ArrayItems:
    items: Sequence[np.ndarray]


def _tree() -> _Tree:
    return _Tree(
        count=3,
        ratio=1.0,
        label=None,
        inner=_Inner(
            np.arange(6, dtype=np.float32),
            sparse.random(5, 7, density=0.3, format="csr", random_state=0),
            TEXTS,
        ),
        refs=[VersionRef(1, 2, "Model", None, "Checkpoint", "SD 1.5", ("trigger", "word"))],
        by_id={1: 0.5, 2: 2.0},
        pairs={(1, 2): 0.25},
        nested=[(), ((7, 0.8), (9, 1.0))],
        maybe=["a", None, ""],
        groups=[
            [],
            [VersionRef(3, 4, "A", "v1", "LORA", None, ())] * 2,
            [VersionRef(5, 6, "B", None, None, "Pony", ())],
        ],
        lazy_refs=[VersionRef(i, i + 1, f"M{i}", None, "LORA", None, ("w",) * (i % 3)) for i in range(70)],
        lazy_hires=[None, Hires(upscaler="4x-UltraSharp", scale=2.0, denoising_strength=0.4), None],
        lazy_groups=[[], [VersionRef(3, 4, "A", "v1", "LORA", None, ())] * 2],
        lazy_nested=[[(1, 0.5)], [], [(2, 1.0), (3, 0.25)]],
        by_text={text: i for i, text in enumerate(dict.fromkeys(TEXTS))} | {f"k{i}": i for i in range(70)},
        scratch=["only the build reads this"] * 100,
    )


def test_a_dataclass_tree_round_trips_with_its_types(tmp_path: Path) -> None:
    path = tmp_path / "tree.npz"
    _npz.save(path, _tree(), {"format": 1})
    back = _npz.load(path, _Tree, {"format": 1})
    original = _tree()
    assert (back.count, back.ratio, back.label, back.by_id, back.pairs, back.nested) == (
        original.count, original.ratio, original.label, original.by_id, original.pairs, original.nested,
    )  # fmt: skip
    assert isinstance(back.ratio, float) and isinstance(back.refs[0], VersionRef)
    assert (
        back.refs == original.refs and list(back.maybe) == ["a", None, ""] and back.groups == original.groups
    )
    assert list(back.inner.names) == TEXTS and back.inner.names[5] == TEXTS[5]
    # Sequences come back lazy, item by item, and equal to what was saved
    assert not isinstance(back.lazy_refs, list) and back.lazy_refs[69] == original.lazy_refs[69]
    assert back.lazy_refs == original.lazy_refs and back.lazy_refs[-1].trained_words == ()
    assert list(back.lazy_hires) == original.lazy_hires and isinstance(back.lazy_hires[1], Hires)
    assert back.lazy_groups[1] == original.lazy_groups[1] and back.lazy_groups[0] == []
    assert [list(items) for items in back.lazy_nested] == original.lazy_nested
    assert back.by_text == original.by_text
    assert back.scratch == [] and b"only the build" not in path.read_bytes()  # build-only: never written
    assert np.array_equal(back.inner.values, original.inner.values)
    assert (back.inner.matrix != original.inner.matrix).nnz == 0 and isinstance(
        back.inner.matrix, sparse.csr_matrix
    )


def test_items_of_a_lazy_sequence_cannot_hold_arrays(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot hold arrays"):
        _npz.save(tmp_path / "items.npz", _ArrayItems([np.zeros(2)]), {"format": 1})


def test_another_key_a_damaged_file_and_a_pickle_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "tree.npz"
    _npz.save(path, _tree(), {"format": 1})
    with pytest.raises(CacheError, match="another key"):
        _npz.load(path, _Tree, {"format": 2})
    data = bytearray(path.read_bytes())
    damaged = 0
    rng = random.Random(0)
    for _ in range(60):  # flip one byte anywhere: every outcome is a CacheError or an equal value
        copy = bytearray(data)
        copy[rng.randrange(len(copy))] ^= 0xFF
        (tmp_path / "bad.npz").write_bytes(bytes(copy))
        try:
            back = _npz.load(tmp_path / "bad.npz", _Tree, {"format": 1})
        except CacheError:
            damaged += 1
        else:
            assert back.by_id == {1: 0.5, 2: 2.0} and list(back.inner.names) == TEXTS
    assert damaged > 40
    import pickle

    (tmp_path / "evil.npz").write_bytes(pickle.dumps({"not": "an archive"}))
    with pytest.raises(CacheError, match="damaged"):
        _npz.load(tmp_path / "evil.npz", _Tree, {"format": 1})
    with pytest.raises(CacheError, match="does not exist"):
        _npz.load(tmp_path / "missing.npz", _Tree, {"format": 1})


@pytest.mark.parametrize(
    "options",
    [
        {"sublinear_tf": True, "ngram_range": (1, 2)},
        {"sublinear_tf": True, "stop_words": "english"},
        {"sublinear_tf": True, "analyzer": "char_wb", "ngram_range": (4, 5)},
        {"analyzer": "char_wb", "ngram_range": (1, 4)},  # words as long as n, and shorter
        {"sublinear_tf": True, "token_pattern": r"\S+", "ngram_range": (1, 2)},  # prompt shapes
    ],
)
def test_text_vectorizer_transforms_as_scikit_learn_does(options: dict) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    mine, matrix = TextVectorizer.fit(TEXTS, **options)
    reference = TfidfVectorizer(dtype=np.float32, **options).fit(TEXTS)
    queries = [*TEXTS, "", "an unseen prompt with a cabin", "CAT  on   a MAT"]
    assert abs(reference.transform(queries) - mine.transform(queries)).max() < 1e-6
    assert abs(reference.transform(TEXTS) - matrix).max() < 1e-6
    # scikit-learn's terms are sorted, so columns are found by binary search; a vectorizer given its
    # terms in another order finds the same columns by a dict
    assert mine.terms_sorted
    shuffled = dataclasses.replace(mine, terms=mine.terms[::-1], terms_sorted=False)
    assert [shuffled.column(t) for t in mine.terms] == list(range(len(mine.terms)))[::-1]


def test_ranker_scores_as_lightgbm_does() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    features = rng.normal(size=(800, 6))
    features[rng.random(features.shape) < 0.1] = 0.0
    labels = (rng.random(800) < 0.1).astype(float)
    for params in ({}, {"zero_as_missing": True}):
        booster = lgb.train(
            # one thread, as the ranker trains: OpenMP threads spin on a shared machine (10 s instead of 0.1)
            {"objective": "lambdarank", "verbosity": -1, "num_leaves": 15, "num_threads": 1, **params},
            lgb.Dataset(features, labels, group=[40] * 20),
            40,
        )
        ranker = Ranker(booster.model_to_string())
        queries = rng.normal(size=(400, 6))
        queries[rng.random(queries.shape) < 0.1] = 0.0
        queries[rng.random(queries.shape) < 0.05] = np.nan
        expected = booster.predict(queries, num_threads=1).reshape(-1, 40)
        assert np.allclose(ranker.score(queries, 40), expected, atol=1e-9)
        ranker.BATCH_ROWS = 100  # type: ignore[misc]  # the LightGBM path for large batches agrees too
        assert np.allclose(ranker.score(queries, 40), expected, atol=1e-9)


def test_agent_cache_survives_a_moved_home_and_damage_is_rebuilt(
    small_bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from diffagent.agents.default import build_default_agent, cache_dir
    from diffagent.bench import PairFiles
    from diffagent.catalog import Store

    store, folder = small_bench
    first_home, second_home = tmp_path / "one", tmp_path / "two"
    first_home.mkdir()
    monkeypatch.setenv("DIFFAGENT_HOME", str(first_home))
    saved = tmp_path / "catalog.sqlite"
    store.conn.execute(f"VACUUM INTO '{saved}'")
    shutil.copy(saved, first_home / "catalog.sqlite")
    shutil.copytree(folder, first_home / "bench")
    with Store(first_home / "catalog.sqlite") as moved:
        agent = build_default_agent(moved, PairFiles(first_home / "bench", ["train"]))
        answer = agent.select("portrait of a woman, detailed face")
    built = sorted(cache_dir().glob("*.npz"))
    assert len(built) == 1

    shutil.move(first_home, second_home)  # the user moves DIFFAGENT_HOME: nothing is rebuilt
    monkeypatch.setenv("DIFFAGENT_HOME", str(second_home))
    with Store(second_home / "catalog.sqlite") as moved:
        pairs = PairFiles(second_home / "bench", ["train"])
        again = build_default_agent(moved, pairs)
        assert pairs._pairs is None  # the cached index was used: the pairs were never parsed
        assert again.select("portrait of a woman, detailed face") == answer
        # an agent that may name more shares the index in memory rather than loading a copy
        assert build_default_agent(moved, pairs, allow_nsfw=True, allow_poi=True).index is again.index
        del agent, again  # once no agent holds it, the next one loads the file again
        gc.collect()
        path = next(cache_dir().glob("*.npz"))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a damaged cache file
        rebuilt = build_default_agent(moved, PairFiles(second_home / "bench", ["train"]))
        assert rebuilt.select("portrait of a woman, detailed face").api == answer.api
    assert "rebuilding the default agent's index" in capsys.readouterr().err
