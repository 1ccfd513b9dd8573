"""Time ``catalog import`` of the shared dump into a fresh store, then the idempotent second import.

Prints one JSON object: wall seconds of both imports, the process's peak RSS, lines and store counts.
Usage: ``.venv/bin/python scripts/bench_import.py [DUMP]`` (default: the shared Civitai dump).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from diffagent.catalog import Store, import_dump

DEFAULT_DUMP = Path(__file__).resolve().parents[2] / "shared" / "data" / "civitai-2023-07" / "models.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", nargs="?", type=Path, default=DEFAULT_DUMP, help="JSONL(.gz) of model items")
    args = parser.parse_args()
    if not args.dump.is_file():
        sys.exit(f"error: no such dump file: {args.dump}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-import-") as tmp,
        Store(Path(tmp) / "catalog.sqlite") as store,
    ):
        start = time.perf_counter()
        first = import_dump(store, args.dump)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        second = import_dump(store, args.dump)
        second_s = time.perf_counter() - start
        stats = store.stats()
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    result = {
        "dump": str(args.dump),
        "lines": first.lines,
        "wall_s": round(first_s, 2),
        "second_import_s": round(second_s, 2),
        "second_import_changed": second.changed,
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "store_mb": round(size_mb, 1),
        "malformed": first.malformed_lines + first.malformed_records,
        **{key: stats[key] for key in ("models", "versions", "files", "images")},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
