"""Load a dump of raw ``GET /api/v1/models`` items (JSONL or JSONL.gz) into the store, atomically.

The dump is written by strangers: a bad line or record is counted with its reason and skipped, and the
rest is imported. A damaged gzip stream ends the import where it breaks, keeping what came before, and
the report says so.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserInputError
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
    """JSON lines that are not a model item with an id and a name (duplicates of an earlier id included)."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Reason -> lines or records skipped for it."""
    sanitised: Counter[str] = field(default_factory=Counter)
    """Kind of catalogue text (trigger words, file names, names) -> values neutralised on the way in."""
    damaged: str | None = None
    """Why reading stopped before the end of the file (a corrupt or truncated gzip stream), else None."""

    def skip(self, reason: str, *, line: bool) -> None:
        self.skipped[reason] += 1
        if line:
            self.malformed_lines += 1
        else:
            self.malformed_records += 1

    def summary(self) -> str:
        text = (
            f"{self.lines} lines: {self.changed} models added or updated, {self.unchanged} unchanged, "
            f"{self.malformed_lines} malformed lines and {self.malformed_records} malformed records skipped"
        )
        if self.skipped:
            text += " (" + ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common()) + ")"
        if self.sanitised:
            text += "; neutralised " + ", ".join(f"{n} {kind}" for kind, n in self.sanitised.most_common())
        if self.damaged:
            text += f"; {self.damaged}"
        return text


def _parse(line: bytes) -> tuple[object, str | None]:
    """The JSON value of one line, or None and why it is not one."""
    try:
        return json.loads(line), None
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except json.JSONDecodeError:
        return None, "not JSON"
    except RecursionError:
        return None, "nested too deeply"
    except ValueError:  # an integer of more than 4,300 digits
        return None, "number too long"


def import_dump(
    store: Store, path: str | Path, progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """Import every line of ``path`` in one transaction: an interrupted import leaves the store untouched.

    ``progress(done_bytes, total_bytes)`` is called as the (compressed) file is read.
    Re-importing the same dump changes nothing (records are compared by content hash; a model id seen
    twice in one dump keeps its first record).
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"no such dump file: {path}")
    total = path.stat().st_size
    report = ImportReport()
    seen: set[int] = set()
    before = Counter(store.sanitised)
    with path.open("rb") as raw, store.transaction():
        magic = raw.read(2)
        raw.seek(0)
        stream = gzip.open(raw, "rb") if magic == b"\x1f\x8b" else raw  # noqa: SIM115 (closed with raw)
        try:
            for line in stream:
                if not line.strip():
                    continue
                report.lines += 1
                record, problem = _parse(line)
                if problem is not None:
                    report.skip(problem, line=True)
                    continue
                model_id = record.get("id") if isinstance(record, dict) else None
                if isinstance(model_id, int) and model_id in seen:
                    report.skip("repeated model id", line=False)
                    continue
                try:
                    changed = store.upsert_model(record)  # type: ignore[arg-type]
                except MalformedRecord as exc:
                    report.skip(str(exc), line=False)
                    continue
                seen.add(model_id)  # type: ignore[arg-type]
                report.changed += changed
                report.unchanged += not changed
                if progress is not None and report.lines % 200 == 0:
                    progress(raw.tell(), total)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            what = "ends early" if isinstance(exc, EOFError) else "is corrupt"
            report.damaged = (
                f"the gzip stream {what} after line {report.lines} ({exc}); the lines before it were imported"
            )
        if progress is not None:
            progress(total, total)
    report.sanitised = store.sanitised - before
    return report
