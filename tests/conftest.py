"""Shared fixtures: a catalogue dump (the real Civitai dump beside the checkout, as CI lays it out, or else
the small invented one in ``tests/fixtures``) and stores built from it.

``DIFFAGENT_TEST_DUMP`` chooses the dump: unset, the shared one when it is there; ``none``, the fixture even
when the shared one is there (to prove that the suite runs without it); a path, that dump.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from diffagent.catalog import Store, import_dump

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURE_DUMP = Path(__file__).resolve().parent / "fixtures" / "catalog.jsonl.gz"


def _real_dump() -> Path | None:
    chosen = os.environ.get("DIFFAGENT_TEST_DUMP", "").strip()
    if chosen.lower() == "none":
        return None
    if not chosen:
        shared = SHARED_DATA / "civitai-2023-07" / "models.jsonl.gz"
        return shared if shared.is_file() else None
    if not Path(chosen).is_file():  # a dump asked for by name never falls back silently
        raise pytest.UsageError(f"DIFFAGENT_TEST_DUMP={chosen}: no such file (or use 'none')")
    return Path(chosen)


REAL_DUMP = _real_dump()
DUMP = REAL_DUMP or FIXTURE_DUMP
DIFFUSIONDB = SHARED_DATA / "diffusiondb-prompts" / "prompts-10k.json"

needs_dump = pytest.mark.skipif(
    REAL_DUMP is None, reason="shared Civitai dump not present (or DIFFAGENT_TEST_DUMP=none)"
)


def renumbered(records: list[dict], count: int) -> list[dict]:
    """``count`` records: ``records`` and then copies of them under fresh model, version, file and image ids,
    for tests that need more lines than the fixture dump holds (pages of a crawl, progress of an import)."""
    out = list(records[:count])
    step = 1 + max(
        [r["id"] for r in records]
        + [v["id"] for r in records for v in r["modelVersions"]]
        + [i["id"] for r in records for v in r["modelVersions"] for i in v["images"]]
        + [f.get("id") or 0 for r in records for v in r["modelVersions"] for f in v["files"]]
    )
    copies = 0
    while len(out) < count:
        copies += 1
        for record in records[: count - len(out)]:
            twin = copy.deepcopy(record)
            twin["id"] += copies * step
            for version in twin["modelVersions"]:
                version["id"] += copies * step
                version["modelId"] = twin["id"]
                for item in version["files"]:
                    item["id"] = (item.get("id") or 0) + copies * step
                for image in version["images"]:
                    image["id"] += copies * step
            out.append(twin)
    return out


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
    """The first 600 raw model items of the dump (checkpoints and LoRAs with sample images); all of the
    fixture's."""
    records = []
    with gzip.open(DUMP, "rt", encoding="utf-8") as handle:
        for line in handle:
            records.append(json.loads(line))
            if len(records) == 600:
                break
    return records


@pytest.fixture(scope="module")
def small_bench(dump_records: list[dict], tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    """The ``dump_records`` in an in-memory store, with their DABench built in a temporary folder."""
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
    """The whole dump imported once per test session (read-only for tests)."""
    store = Store(tmp_path_factory.mktemp("full") / "catalog.sqlite")
    import_dump(store, DUMP)
    return store


@pytest.fixture(scope="session")
def dump_catalog(dump_records: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalogue file of the ``dump_records`` with their DABench in ``bench/`` beside it, made once per
    session, for tests to copy (:func:`copy_catalog`): copies keep the store's identity and revision, so
    the default agent built on one is the one cached for all (see :func:`shared_agent_cache`)."""
    from diffagent.bench import ensure_bench

    folder = tmp_path_factory.mktemp("dump-catalog")
    with Store(folder / "catalog.sqlite") as store:
        with store.transaction():
            for record in dump_records:
                store.upsert_model(record)
        ensure_bench(store, folder / "bench")
    return folder / "catalog.sqlite"


def copy_catalog(catalog: Path, home: Path) -> Path:
    """``catalog`` and its bench copied into ``home``; returns the copied catalogue file."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(catalog, home / "catalog.sqlite")
    shutil.copytree(catalog.parent / "bench", home / "bench", dirs_exist_ok=True)
    return home / "catalog.sqlite"


@pytest.fixture(scope="session")
def agent_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the default agent's cache files across the session (keyed by store identity,
    revision and DABench: an agent is built once per catalogue content, as for a user)."""
    return tmp_path_factory.mktemp("default-agent")


@pytest.fixture
def shared_agent_cache(agent_cache: Path, _isolated_home: None) -> None:
    """The test's DIFFAGENT_HOME keeps the default agent's cache in the session's :func:`agent_cache`."""
    link_agent_cache(Path(os.environ["DIFFAGENT_HOME"]), agent_cache)


def link_agent_cache(home: Path, cache: Path) -> None:
    """``home/default-agent`` made a link to ``cache``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "default-agent").symlink_to(cache, target_is_directory=True)
