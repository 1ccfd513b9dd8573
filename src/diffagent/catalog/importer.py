"""Load a dump of raw ``GET /api/v1/models`` items (JSONL or JSONL.gz) into the store, atomically."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .store import MalformedRecord, Store

__all__ = ["ImportReport", "import_dump"]


@dataclass
class ImportReport:
    lines: int = 0
    changed: int = 0
    unchanged: int = 0
    malformed_lines: int = 0
    """Lines that are not JSON."""
    malformed_records: int = 0
    """JSON lines that are not a model item with an id and a name."""

    def summary(self) -> str:
        return (
            f"{self.lines} lines: {self.changed} models added or updated, {self.unchanged} unchanged, "
            f"{self.malformed_lines} malformed lines and {self.malformed_records} malformed records skipped"
        )


def import_dump(
    store: Store, path: str | Path, progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """Import every line of ``path`` in one transaction: an interrupted import leaves the store untouched.

    ``progress(done_bytes, total_bytes)`` is called as the (compressed) file is read.
    Re-importing the same dump changes nothing (records are compared by content hash).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such dump file: {path}")
    total = path.stat().st_size
    report = ImportReport()
    with path.open("rb") as raw, store.transaction():
        magic = raw.read(2)
        raw.seek(0)
        stream = gzip.open(raw, "rb") if magic == b"\x1f\x8b" else raw  # noqa: SIM115 (closed with raw)
        for line in stream:
            if not line.strip():
                continue
            report.lines += 1
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                report.malformed_lines += 1
                continue
            try:
                changed = store.upsert_model(record)
            except MalformedRecord:
                report.malformed_records += 1
                continue
            report.changed += changed
            report.unchanged += not changed
            if progress is not None and report.lines % 200 == 0:
                progress(raw.tell(), total)
        if progress is not None:
            progress(total, total)
    return report
