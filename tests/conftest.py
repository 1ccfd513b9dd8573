"""Shared fixtures: the real Civitai dump beside the checkout (as CI lays it out) and stores built from it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from diffagent.catalog import Store, import_dump

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DUMP = SHARED_DATA / "civitai-2023-07" / "models.jsonl.gz"
DIFFUSIONDB = SHARED_DATA / "diffusiondb-prompts" / "prompts-10k.json"

needs_dump = pytest.mark.skipif(not DUMP.is_file(), reason="shared Civitai dump not present")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the user's DIFFAGENT_HOME."""
    monkeypatch.setenv("DIFFAGENT_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def one_torch_thread():  # type: ignore[no-untyped-def]
    """Tiny models gain nothing from threads; on a busy CPU, threads waiting for each other cost 5-10x."""
    import torch  # here, so that tests without a model do not pay for the import

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def dump_records() -> list[dict]:
    """The first 600 raw model items of the shared dump (checkpoints and LoRAs with sample images)."""
    if not DUMP.is_file():
        pytest.skip("shared Civitai dump not present")
    records = []
    with gzip.open(DUMP, "rt", encoding="utf-8") as handle:
        for line in handle:
            records.append(json.loads(line))
            if len(records) == 600:
                break
    return records


@pytest.fixture(scope="module")
def small_bench(dump_records: list[dict], tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    """The first dump records in an in-memory store, with their DABench built in a temporary folder."""
    from diffagent.bench import build_bench

    store = Store()
    with store.transaction():
        for record in dump_records:
            store.upsert_model(record)
    folder = tmp_path_factory.mktemp("bench")
    build_bench(store, folder)
    return store, folder


@pytest.fixture(scope="session")
def full_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The whole shared dump imported once per test session (read-only for tests)."""
    if not DUMP.is_file():
        pytest.skip("shared Civitai dump not present")
    store = Store(tmp_path_factory.mktemp("full") / "catalog.sqlite")
    import_dump(store, DUMP)
    return store
