"""The invented catalogue in ``tests/fixtures``: what its generator writes, in the shape of the real
dump, with the cases the suite relies on (poi and nsfw models, Soft images, hires fix, LoRA tags, hashes
that join)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURE_DUMP, REAL_DUMP, needs_dump
from diffagent.catalog import Store, import_dump, parse_meta


def _records(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def fixture_records() -> list[dict]:
    return _records(FIXTURE_DUMP)


def test_the_committed_file_is_what_the_generator_writes(tmp_path: Path) -> None:
    script = FIXTURE_DUMP.with_name("make_catalog.py")
    subprocess.run([sys.executable, str(script), str(tmp_path / "again.jsonl.gz")], check=True, timeout=120)
    assert (tmp_path / "again.jsonl.gz").read_bytes() == FIXTURE_DUMP.read_bytes()  # rerun the script


def test_the_fixture_holds_what_the_tests_need(fixture_records: list[dict]) -> None:
    versions = [v for r in fixture_records for v in r["modelVersions"]]
    images = [(r, i) for r in fixture_records for v in r["modelVersions"] for i in v["images"]]
    metas = [i["meta"] for _, i in images if i["meta"]]
    assert 20 <= len(fixture_records) <= 100 and 300 <= len(images) <= 1000
    assert {r["type"] for r in fixture_records} == {"Checkpoint", "LORA"}
    assert {"SD 1.5", "SD 2.1 768", "SD 2.1", "SDXL 1.0"} <= {v["baseModel"] for v in versions}
    assert sum(r["poi"] for r in fixture_records) >= 2 and any(r["nsfw"] for r in fixture_records)
    assert {"None", "Soft"} == {i["nsfw"] for _, i in images}
    loras = [r["modelVersions"][0] for r in fixture_records if r["type"] == "LORA"]
    assert len(loras) >= 10 and sum(bool(v["trainedWords"]) for v in loras) == len(loras) - 1
    assert sum("<lora:" in (m.get("prompt") or "") for m in metas) >= 50
    assert sum("Hires upscale" in m for m in metas) >= 20 and sum("Clip skip" in m for m in metas) >= 100
    # every "Model hash" is the AutoV2 of a catalogue file, except the few meant to stay unresolved
    autov2 = {f["hashes"]["AutoV2"] for v in versions for f in v["files"]}
    hashes = [m["Model hash"].upper() for m in metas if "Model hash" in m]
    resolved = sum(h in autov2 for h in hashes)
    assert len(hashes) - 40 < resolved < len(hashes)
    assert all(re.fullmatch(r"[0-9A-F]{64}", f["hashes"]["SHA256"]) for v in versions for f in v["files"])


def test_the_fixture_imports_and_parses_cleanly(fixture_records: list[dict]) -> None:
    store = Store()
    report = import_dump(store, FIXTURE_DUMP)
    assert report.changed == len(fixture_records) and report.malformed_lines == report.malformed_records == 0
    metas = [i["meta"] for r in fixture_records for v in r["modelVersions"] for i in v["images"] if i["meta"]]
    parsed = [parse_meta(m) for m in metas]
    assert all(p.steps and p.cfg_scale and p.width and p.sampler for p in parsed)
    assert sum(p.clip_skip == 2 for p in parsed) >= 50


@needs_dump
@pytest.mark.slow
def test_the_fixture_has_the_real_dumps_shape_and_none_of_its_names(fixture_records: list[dict]) -> None:
    """Every key the fixture uses, at every level, the real dump uses too, with values of the same JSON type;
    no model name, file name or prompt of the fixture comes from the real dump."""
    assert REAL_DUMP is not None

    def shape(records: list[dict]) -> dict[str, dict[str, set[str]]]:
        levels: dict[str, dict[str, set[str]]] = {
            k: {} for k in ("model", "version", "file", "image", "meta")
        }

        def note(level: str, item: dict) -> None:
            for key, value in item.items():
                if value is not None:
                    levels[level].setdefault(key, set()).add(type(value).__name__.replace("int", "float"))

        for record in records:
            note("model", record)
            for version in record["modelVersions"]:
                note("version", version)
                for item in version["files"]:
                    note("file", item)
                for image in version["images"]:
                    note("image", image)
                    note("meta", image.get("meta") or {})
        return levels

    real = _records(REAL_DUMP)
    ours, theirs = shape(fixture_records), shape(real)
    for level, keys in ours.items():
        for key, types in keys.items():
            assert key in theirs[level], (level, key)
            assert types <= theirs[level][key], (level, key, types, theirs[level][key])

    def names(records: list[dict]) -> set[str]:
        found = set()
        for record in records:
            found.add(record["name"].casefold())
            for version in record["modelVersions"]:
                found |= {f["name"].casefold() for f in version["files"]}
                found |= {(i.get("meta") or {}).get("prompt") or "" for i in version["images"]}
        return found - {""}

    assert not names(fixture_records) & names(real)
