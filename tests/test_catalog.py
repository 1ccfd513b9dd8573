"""The catalogue: dump import, hash look-up, meta normalisation, filters, stats, search and the CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import renumbered
from diffagent.catalog import CatalogFilter, Resource, Store, import_dump, parse_meta, search_cards
from diffagent.cli import app
from diffagent.errors import StoreError

STATS_KEYS = {"models", "versions", "files", "images", "by_type", "by_base_model"}


def _model(
    model_id: int,
    name: str,
    *,
    type_: str = "Checkpoint",
    nsfw: bool = False,
    base: str = "SD 1.5",
    tags: tuple[str, ...] = (),
    description: str = "",
    words: tuple[str, ...] = (),
    file: bool = True,
    images: tuple[str, ...] = ("None",),
) -> dict:
    """A hand-written ``/api/v1/models`` item with one version, its primary file and sample images."""
    version_id = model_id * 10
    sha = hashlib.sha256(str(model_id).encode()).hexdigest().upper()
    files = [
        {
            "id": version_id, "name": f"{name}.safetensors", "sizeKB": 2048.5, "type": "Model",
            "primary": True, "metadata": {"fp": "fp16", "format": "SafeTensor"},
            "hashes": {"AutoV2": sha[:10], "SHA256": sha},
            "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
        }
    ]  # fmt: skip
    return {
        "id": model_id, "name": name, "type": type_, "nsfw": nsfw, "tags": list(tags),
        "description": description, "stats": {"downloadCount": 100 * model_id},
        "modelVersions": [{
            "id": version_id, "modelId": model_id, "name": "v1", "baseModel": base,
            "trainedWords": list(words), "files": files if file else [],
            "images": [
                {"id": version_id * 10 + i, "nsfw": level, "width": 512, "height": 768,
                 "meta": {"prompt": f"{name} picture", "steps": 20, "cfgScale": 7, "Size": "512x768"}}
                for i, level in enumerate(images)
            ],
        }],
    }  # fmt: skip


def _write_jsonl(path: Path, lines: list) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        for line in lines:
            handle.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            handle.write(b"\n")
    return path


def _snapshot(store: Store) -> tuple:
    """Everything an import may change, compared across runs."""
    names = store.conn.execute("SELECT id, name, content_hash FROM models ORDER BY id").fetchall()
    return store.stats(), store.revision, [tuple(row) for row in names]


# -- import -----------------------------------------------------------------------------------------------


def test_import_skips_and_counts_malformed_lines_and_records(tmp_path: Path) -> None:
    bare = {"id": 3, "name": "only an id and a name"}
    holes = _model(4, "holes")
    holes["modelVersions"].append(
        {"id": 41, "files": [{"hashes": None}, "junk"], "images": [{"meta": 7}, {"id": 9}]}
    )
    holes["stats"] = "not a dict"
    lines = [
        _model(1, "first"), b"{not json", b"", b"\xff\xfe\x00garbage", [1, 2], {"name": "no id"}, {"id": 2},
        {"id": "5", "name": "string id"}, bare, holes,
    ]  # fmt: skip
    path = _write_jsonl(tmp_path / "dump.jsonl", lines)
    with Store(tmp_path / "c.sqlite") as store:
        report = import_dump(store, path)
        assert (report.lines, report.malformed_lines, report.malformed_records) == (9, 2, 4)
        assert report.changed == 3 and "2 malformed lines and 4 malformed records" in report.summary()
        assert [row[0] for row in store.conn.execute("SELECT id FROM models ORDER BY id")] == [1, 3, 4]
        # a version with missing fields is kept with them empty; an image without an id is not
        row = store.conn.execute("SELECT base_model, trained_words FROM versions WHERE id = 41").fetchone()
        assert tuple(row) == (None, "[]")
        assert store.conn.execute("SELECT COUNT(*) FROM images WHERE version_id = 41").fetchone()[0] == 1
        assert store.conn.execute("SELECT download_count FROM models WHERE id = 4").fetchone()[0] == 0


def test_reimport_changes_nothing_and_an_update_is_applied(tmp_path: Path, dump_records: list[dict]) -> None:
    records = dump_records[:80]
    path = _write_jsonl(tmp_path / "dump.jsonl.gz", records)
    with Store(tmp_path / "c.sqlite") as store:
        first = import_dump(store, path)
        before = _snapshot(store)
        assert first.changed == len(records) and before[1] > 0
        second = import_dump(store, path)
        assert second.changed == 0 and second.unchanged == len(records)
        assert _snapshot(store) == before  # revision included

        renamed = dict(dump_records[0], name="renamed")
        import_dump(store, _write_jsonl(tmp_path / "update.jsonl", [renamed]))
        assert store.revision == before[1] + 1
        assert (
            store.conn.execute("SELECT name FROM models WHERE id = ?", (renamed["id"],)).fetchone()[0]
            == "renamed"
        )
        assert store.stats() == before[0]  # the old versions, files and images were replaced, not added


_KILLED_IMPORT = """
import os, signal, sys
from diffagent.catalog import Store, import_dump
calls = 0
def progress(done, total):
    global calls
    calls += 1
    if calls == 2:  # 400 lines into the transaction
        os.kill(os.getpid(), signal.SIGKILL)
import_dump(Store(sys.argv[1]), sys.argv[2], progress=progress)
"""


def test_an_import_killed_midway_leaves_the_previous_state(tmp_path: Path, dump_records: list[dict]) -> None:
    records = renumbered(dump_records, 600)  # the kill comes 400 lines in
    db = tmp_path / "c.sqlite"
    with Store(db) as store:
        import_dump(store, _write_jsonl(tmp_path / "old.jsonl", records[:100]))
        before = _snapshot(store)
    newer = [dict(r, name=r["name"] + " (new)") for r in records[:100]] + records[100:600]
    path = _write_jsonl(tmp_path / "new.jsonl.gz", newer)

    killed = subprocess.run([sys.executable, "-c", _KILLED_IMPORT, str(db), str(path)], timeout=120)
    assert killed.returncode == -signal.SIGKILL

    with Store(db) as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert _snapshot(store) == before
        report = import_dump(store, path)  # the rerun completes it
        assert report.changed == 600 and store.stats()["models"] == 600
        assert (
            store.conn.execute("SELECT COUNT(*) FROM models WHERE name LIKE '% (new)'").fetchone()[0] == 100
        )


# -- hashes and meta ----------------------------------------------------------------------------------------


def test_a_reconnected_store_reads_through_its_own_connection_and_writes_nothing(
    tmp_path: Path, dump_records: list[dict]
) -> None:
    # as a forked worker does; "?" and "#" in the folder name must not end the file's URI
    store = Store(tmp_path / "odd ?#name" / "catalog.sqlite")
    with store.transaction():
        store.upsert_model(dump_records[0])
    before = store.conn
    store.reconnect_read_only()
    assert store.conn is not before and store.stats()["models"] == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.conn.execute("DELETE FROM models")
    with pytest.raises(StoreError, match="in-memory"):
        Store().reconnect_read_only()


def test_version_by_autov2_and_sha256_in_any_case(dump_records: list[dict]) -> None:
    store = Store()
    for record in dump_records[:60]:
        store.upsert_model(record)
    owners: dict[str, set[int]] = {}
    for record in dump_records[:60]:
        for version in record["modelVersions"]:
            for item in version["files"]:
                owners.setdefault((item.get("hashes") or {}).get("SHA256", ""), set()).add(version["id"])
    sha, versions = next((h, v) for h, v in owners.items() if len(h) == 64 and len(v) == 1)
    (version_id,) = versions
    for query in (
        sha[:10].lower(),
        sha[:10].upper(),
        sha.lower(),
        sha.upper(),
        sha[:10].swapcase(),
        sha[:12],
    ):
        ref = store.version_by_hash(query)
        assert ref is not None and ref.version_id == version_id, query
    assert store.version_by_hash("0000000000") is None
    assert store.version_by_hash("not-a-hash") is None and store.version_by_hash("") is None


def test_meta_spellings_and_types_are_normalised() -> None:
    a = parse_meta({"Clip skip": "2", "steps": "30", "cfgScale": "7.5", "seed": "12345", "Size": "512x768"})
    b = parse_meta(
        {"clipSkip": 2, "Steps": 30, "CFG scale": 7.5, "Seed": 12345, "width": 512, "height": "768"}
    )
    assert a == b
    assert (a.clip_skip, a.steps, a.cfg_scale, a.seed, a.width, a.height) == (2, 30, 7.5, 12345, 512, 768)
    assert parse_meta({"Size": " 640 X 960 "}).width == 640 and parse_meta({"Size": "big"}).width is None


def test_meta_null_missing_and_mistyped_values_become_none() -> None:
    empty = parse_meta(None)
    assert empty == parse_meta({}) == parse_meta("a string") == parse_meta([1, 2])
    assert all(value in (None, []) for value in empty.as_dict().values())
    odd = parse_meta({
        "prompt": 12, "negativePrompt": None, "sampler": "", "steps": [20], "cfgScale": {"v": 7},
        "seed": True, "Size": 512, "Clip skip": "two", "Model hash": 123, "resources": "lora",
    })  # fmt: skip
    assert odd == empty
    assert parse_meta({"steps": "0", "cfgScale": -1, "Clip skip": 0}).as_dict() == empty.as_dict()


def test_meta_seeds_keep_every_digit_up_to_64_bits() -> None:
    assert parse_meta({"seed": 4242346144803208700}).seed == 4242346144803208700
    assert parse_meta({"seed": "-123456789123456780"}).seed == -123456789123456780
    assert parse_meta({"seed": -1}).seed == -1 and parse_meta({"seed": "42.0"}).seed == 42
    assert parse_meta({"seed": 2**64}).seed is None and parse_meta({"seed": str(2**63)}).seed is None
    assert parse_meta({"seed": "9" * 5000}).seed is None


def test_meta_hashes_and_resources() -> None:
    meta = parse_meta({
        "Model hash": "abcdef0123", "Model": "realisticVision",
        "resources": [{"type": "LORA", "name": "add_detail", "hash": "0123abcdef", "weight": "0.8"},
                      "junk", {"name": "no type"}, {"type": "model", "hash": "not hex!"}],
    })  # fmt: skip
    assert meta.model_hash == "ABCDEF0123" and meta.model_name == "realisticVision"
    assert meta.resources == [Resource("lora", "add_detail", "0123ABCDEF", 0.8), Resource("model")]


def test_parsed_meta_lands_in_image_columns() -> None:
    record = _model(1, "seeded")
    record["modelVersions"][0]["images"][0]["meta"] = {
        "Clip skip": "2", "Size": "640x960", "seed": 4242346144803208700, "sampler": "Euler a", "steps": "28",
    }  # fmt: skip
    store = Store()
    store.upsert_model(record)
    row = store.conn.execute(
        "SELECT clip_skip, gen_width, gen_height, seed, sampler, steps, meta_raw FROM images"
    )
    clip_skip, width, height, seed, sampler, steps, raw = row.fetchone()
    assert (clip_skip, width, height, seed, sampler, steps) == (
        2,
        640,
        960,
        4242346144803208700,
        "Euler a",
        28,
    )
    assert json.loads(raw)["Clip skip"] == "2"  # the raw record is kept beside the parsed columns


# -- filters, stats, search ---------------------------------------------------------------------------------


@pytest.fixture
def small_store() -> Store:
    store = Store()
    for record in (
        _model(1, "Cyberpunk City", tags=("cyberpunk", "city"), images=("None", "Soft")),
        _model(2, "Generic Mix", description="<p>good at <b>cyberpunk</b> scenes too</p>"),
        _model(3, "Nsfw Model", nsfw=True),
        _model(4, "Neon Lights", type_="LORA", words=("neonstyle",), images=("Soft",)),
        _model(5, "No File", file=False),
        _model(6, "Embedding", type_="TextualInversion"),
        _model(7, "Forest SD2", base="SD 2.1"),
    ):
        store.upsert_model(record)
    return store


def _version_models(store: Store, flt: CatalogFilter) -> set[int]:
    where, params = flt.versions_where()
    rows = store.conn.execute(
        f"SELECT m.id FROM versions v JOIN models m ON m.id = v.model_id WHERE {where}", params
    )
    return {row[0] for row in rows}


def _image_models(store: Store, flt: CatalogFilter) -> list[int]:
    where, params = flt.images_where()
    return sorted(
        row[0] for row in store.conn.execute(f"SELECT model_id FROM images i WHERE {where}", params)
    )


def test_filters_default_to_the_safe_collection(small_store: Store) -> None:
    assert _version_models(small_store, CatalogFilter()) == {1, 2, 4, 7}
    assert _version_models(small_store, CatalogFilter(allow_nsfw_models=True)) == {1, 2, 3, 4, 7}
    assert _version_models(small_store, CatalogFilter(require_file=False)) == {1, 2, 4, 5, 7}
    assert _version_models(small_store, CatalogFilter(base_models=("SD 1.5",))) == {1, 2, 4}
    assert _version_models(small_store, CatalogFilter(types=("LORA",))) == {4}
    assert 6 in _version_models(small_store, CatalogFilter(types=None))
    assert _image_models(small_store, CatalogFilter()) == [1, 2, 3, 5, 6, 7]  # no Soft image
    assert _image_models(small_store, CatalogFilter(image_nsfw=("None", "Soft"))) == [1, 1, 2, 3, 4, 5, 6, 7]


def test_stats_keys_and_counts(small_store: Store) -> None:
    stats = small_store.stats()
    assert set(stats) == STATS_KEYS
    assert (stats["models"], stats["versions"], stats["files"], stats["images"]) == (7, 7, 6, 8)
    assert stats["by_type"] == {"Checkpoint": 5, "LORA": 1, "TextualInversion": 1}
    assert stats["by_base_model"] == {"SD 1.5": 6, "SD 2.1": 1}


def test_search_ranks_name_and_tags_above_description(small_store: Store) -> None:
    hits = search_cards(small_store, "cyberpunk")
    assert [hit.model_id for hit in hits] == [1, 2] and hits[0].score > hits[1].score
    assert hits[0].version_id == 10 and hits[0].base_model == "SD 1.5" and "cyberpunk" in hits[0].tags
    assert [hit.model_id for hit in search_cards(small_store, "neonstyle")] == [4]  # trigger words
    assert search_cards(small_store, "nsfw") == []  # the nsfw model is filtered out
    assert search_cards(small_store, '" OR NEAR( cyberpunk *') and search_cards(small_store, "!!!") == []


# -- command line -------------------------------------------------------------------------------------------


def test_cli_import_stats_and_search(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["catalog", "import", str(tmp_path / "missing.jsonl.gz")])
    assert missing.exit_code != 0 and missing.output.strip().count("\n") == 0
    assert "no such dump file" in missing.output

    path = _write_jsonl(tmp_path / "dump.jsonl", [_model(1, "Cyberpunk City", tags=("cyberpunk",)), b"{oops"])
    imported = runner.invoke(app, ["catalog", "import", str(path)])
    assert imported.exit_code == 0 and "1 malformed lines" in imported.output

    stats = runner.invoke(app, ["catalog", "stats", "--json"])
    assert stats.exit_code == 0
    counts = json.loads(stats.stdout)
    assert set(counts) == STATS_KEYS and counts["models"] == 1 and counts["by_type"] == {"Checkpoint": 1}

    found = runner.invoke(app, ["catalog", "search", "cyberpunk"], env={"COLUMNS": "200"})
    assert found.exit_code == 0 and "Cyberpunk City" in found.stdout


def test_live_api_nsfw_levels_map_to_the_dump_vocabulary() -> None:
    from diffagent.catalog.nsfw import image_level, model_is_nsfw

    assert image_level({"nsfw": "Soft", "nsfwLevel": 1}) == "Soft"
    assert [image_level({"nsfwLevel": n}) for n in (1, 2, 4, 8, 16)] == ["None", "Soft", "Mature", "X", "X"]
    assert image_level({"nsfw": False}) == "None"
    assert image_level({"nsfw": True}) is None and image_level({}) is None
    # today's /images items: a boolean nsfw, the string nsfwLevel and the integer browsingLevel
    assert image_level({"nsfw": False, "nsfwLevel": "Mature", "browsingLevel": 4}) == "Mature"
    assert image_level({"nsfw": True, "browsingLevel": 8}) == "X"
    assert image_level({"nsfwLevel": 3}) == "Soft"  # bit flags: the highest level present
    assert not model_is_nsfw({"nsfwLevel": 1 | 2 | 4}) and model_is_nsfw({"nsfwLevel": 1 | 16})
    assert model_is_nsfw({"nsfw": True, "nsfwLevel": 1})
