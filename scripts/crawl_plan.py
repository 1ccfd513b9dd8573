"""Plan a full crawl of today's Civitai from per-page costs measured on the fixture of the 2026 API.

    PYTHONPATH=src .venv/bin/python scripts/crawl_plan.py [--pace 1.0] [--images-per-version 50]
        [--models 10000 100000 500000] [--json OUT]

Crawls ``tests/fixtures/civitai-2026`` from the tests' loopback server (``tests/civitai_2026.py``) with
``diffagent.catalog.crawl`` in pages of 10 models, and measures: requests per model (``/models`` pages and
``/images`` look-ups for versions whose page sends no meta), response bytes per model page item and per
image item, local seconds per request (parsing and upserting, network excluded: the server is loopback),
and the store's bytes per model and per image (SQLite after VACUUM). Then it scales those to N models at
``--pace`` requests per second, the one figure that is an assumption (Civitai rate-limits per IP or token
and documents no number; a 429 carries Retry-After, which the crawler honours). Every model is assumed to
need image look-ups for its versions, as most of today's model pages carry no meta. Versions per model come
from the real 2023 dump beside the checkout when it is there (``--dump``; the fixture's ratio is made up),
and ``--reference-store`` (a store imported from that dump) replaces the fixture's store bytes per model
and per image with real ones: real descriptions and meta are much longer than the fixture's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from civitai_2026 import TOKEN, Civitai2026
from diffagent.catalog import CrawlQuery, RetryPolicy, Store, crawl


def measure(images_per_version: int) -> dict[str, float]:
    server = Civitai2026()
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "catalog.sqlite"
            with Store(path) as store:
                began = time.perf_counter()
                report = crawl(
                    store,
                    CrawlQuery(page_size=10, images_per_version=images_per_version),
                    base_url=server.url,
                    token=TOKEN,
                    retry=RetryPolicy(max_retries=0),
                )
                seconds = time.perf_counter() - began
                counts = store.stats()
                store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                store.conn.execute("VACUUM")
                images_bytes = store.conn.execute(
                    "SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'images%'"
                ).fetchone()[0]
            size = path.stat().st_size
    finally:
        server.close()
    requests = report.pages + report.image_requests
    versions = counts["versions"]
    return {
        "models": counts["models"],
        "versions": versions,
        "images": counts["images"],
        "model_pages": report.pages,
        "image_requests": report.image_requests,
        "image_lookups_per_version": report.image_requests / versions,
        "versions_per_model": versions / counts["models"],
        "images_per_lookup": report.images / max(report.image_requests, 1),
        "bytes_per_model_item": server.sent["models"] / counts["models"],
        "bytes_per_image_item": server.sent["images"] / max(report.images, 1),
        "local_s_per_request": seconds / requests,
        "store_bytes_per_image": images_bytes / counts["images"],
        "store_bytes_per_model": (size - images_bytes) / counts["models"],
    }


DUMP = Path(__file__).resolve().parents[2] / "shared" / "data" / "civitai-2023-07" / "models.jsonl.gz"


def versions_per_model(dump: Path) -> float | None:
    """Mean versions per model in a dump of raw ``/models`` items (None when the file is absent)."""
    if not dump.is_file():
        return None
    models = versions = 0
    with gzip.open(dump, "rt", encoding="utf-8") as handle:
        for line in handle:
            models += 1
            versions += len(json.loads(line).get("modelVersions") or [])
    return versions / models


def store_bytes(path: Path) -> dict[str, float]:
    """Bytes per model (everything but images) and per image of an existing store, read only."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        models = conn.execute("SELECT COUNT(*) FROM models").fetchone()[0]
        images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        pages = dict(conn.execute("SELECT name LIKE 'images%', SUM(pgsize) FROM dbstat GROUP BY 1"))
    return {
        "store_bytes_per_model": pages.get(0, 0) / models,
        "store_bytes_per_image": pages.get(1, 0) / images,
    }


def plan(m: dict[str, float], models: int, pace: float, images_per_version: int) -> dict[str, float]:
    """Requests, hours and store size for ``models`` models at ``pace`` requests per second."""
    versions = models * m["versions_per_model"]
    pages = math.ceil(models / 100)
    lookups = versions  # every version asked once (today's pages mostly carry no meta)
    images = lookups * images_per_version
    requests = pages + lookups
    seconds = requests / pace + requests * m["local_s_per_request"]
    return {
        "models": models,
        "requests": requests,
        "model_pages": pages,
        "image_lookups": lookups,
        "hours": seconds / 3600,
        "download_gb": (models * m["bytes_per_model_item"] + images * m["bytes_per_image_item"]) / 1e9,
        "store_gb": (models * m["store_bytes_per_model"] + images * m["store_bytes_per_image"]) / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pace", type=float, default=1.0, help="requests per second the API allows")
    parser.add_argument("--images-per-version", type=int, default=50, help="/images limit per version")
    parser.add_argument("--models", type=int, nargs="+", default=[10_000, 100_000, 500_000])
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    parser.add_argument("--dump", type=Path, default=DUMP, help="real dump for the versions per model")
    parser.add_argument("--reference-store", type=Path, help="a real store for the bytes per model and image")
    args = parser.parse_args()
    measured = measure(args.images_per_version)
    real = versions_per_model(args.dump)
    if real is not None:
        measured["versions_per_model"] = real
    if args.reference_store is not None:
        measured.update(store_bytes(args.reference_store))
    rows = [plan(measured, n, args.pace, args.images_per_version) for n in args.models]
    print("measured on the fixture:")
    for key, value in measured.items():
        print(f"  {key}: {value:.4g}")
    print(f"\nplan at {args.pace:g} requests/s, {args.images_per_version} images per version:\n")
    print("| models | requests | /models pages | /images look-ups | hours | download GB | store GB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['models']:,} | {r['requests']:,.0f} | {r['model_pages']:,} | {r['image_lookups']:,.0f} |"
            f" {r['hours']:.1f} | {r['download_gb']:.2f} | {r['store_gb']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"measured": measured, "plan": rows}, indent=2))


if __name__ == "__main__":
    main()
