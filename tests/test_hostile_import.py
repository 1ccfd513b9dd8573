"""One bad record never aborts an import: each is counted with its reason and the rest is imported."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _hostile import checkpoint, lora, write_dump
from diffagent.catalog import Store, import_dump
from diffagent.cli import app
from diffagent.errors import StoreError

runner = CliRunner()


def _hostile_lines() -> list[object]:
    huge_size = checkpoint(5)
    huge_size["modelVersions"][0]["images"][0]["meta"]["Size"] = "99999999999999999999x5"
    huge_size["modelVersions"][0]["images"][0]["width"] = 2**70
    huge_size["stats"] = {"downloadCount": 10**30, "rating": 10**400}
    return [
        checkpoint(1),
        {"id": 2**63, "name": "too big an id"},
        {"id": -4, "name": "negative id"},
        {"id": 6, "name": "\x1b[2J"},  # nothing left once the escape is gone
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id": 7, "name": "lone \\ud800 surrogate"}',
        b'{"id": 8, "name": "n", "x": ' + b"9" * 5000 + b"}",
        b"\xff\xfe not utf-8",
        huge_size,
        lora(2),
        checkpoint(1, name="the same id again, other content"),
    ]


def test_bad_records_are_counted_by_reason_and_the_rest_imported(tmp_path: Path) -> None:
    path = write_dump(tmp_path / "dump.jsonl", _hostile_lines())
    with Store(tmp_path / "c.sqlite") as store:
        report = import_dump(store, path)
        assert sorted(row[0] for row in store.conn.execute("SELECT id FROM models")) == [1, 2, 5]
        row = store.conn.execute("SELECT width, gen_width FROM images WHERE model_id = 5").fetchone()
        assert tuple(row) == (None, None)
        assert report.skipped == {
            "id out of range": 2, "empty name": 1, "nested too deeply": 1, "lone surrogate in a string": 1,
            "number too long": 1, "not UTF-8": 1, "repeated model id": 1,
        }  # fmt: skip
        assert (report.changed, report.malformed_lines, report.malformed_records) == (3, 3, 5)
        assert "1 repeated model id" in report.summary()
        revision = store.revision
        again = import_dump(store, path)  # duplicate ids in one dump: a rerun changes nothing
        assert (again.changed, again.unchanged, store.revision) == (0, 3, revision)


def _gzip_dump(tmp_path: Path, count: int = 400) -> bytes:
    plain = write_dump(tmp_path / "plain.jsonl", [checkpoint(i) for i in range(1, count + 1)]).read_bytes()
    return gzip.compress(plain)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gzip_keeps_what_came_before_and_says_so(tmp_path: Path, damage: str) -> None:
    blob = _gzip_dump(tmp_path)
    if damage == "truncated":
        blob = blob[: len(blob) // 2]
    else:
        middle = len(blob) // 2
        blob = blob[:middle] + bytes(b ^ 0xFF for b in blob[middle : middle + 64]) + blob[middle + 64 :]
    path = tmp_path / "dump.jsonl.gz"
    path.write_bytes(blob)
    with Store(tmp_path / "c.sqlite") as store:
        report = import_dump(store, path)
        assert report.damaged is not None and "gzip stream" in report.damaged
        assert 0 < store.stats()["models"] < 400
    result = runner.invoke(app, ["catalog", "import", str(path)], env={"DIFFAGENT_HOME": str(tmp_path / "h")})
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0
    assert "gzip stream" in result.output and "Traceback" not in result.output


def test_a_gzip_that_is_not_one_at_all_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    result = runner.invoke(app, ["catalog", "import", str(path)], env={"DIFFAGENT_HOME": str(tmp_path / "h")})
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0 and "gzip" in result.output


def test_a_full_disk_names_the_cause_and_leaves_the_store_intact(tmp_path: Path) -> None:
    path = write_dump(tmp_path / "dump.jsonl", [checkpoint(i) for i in range(1, 300)])
    with Store(tmp_path / "c.sqlite") as store:
        import_dump(store, write_dump(tmp_path / "first.jsonl", [checkpoint(1000)]))
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own 'disk full'
        with pytest.raises(StoreError, match="the disk is full") as failure:
            import_dump(store, path)
        assert "cannot rollback" not in str(failure.value)
        assert store.stats()["models"] == 1 and not store.conn.in_transaction


def test_a_second_writer_waits_then_gets_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Store(path) as first, Store(path, lock_timeout=0.2) as second:
        with first.transaction(), pytest.raises(StoreError, match="another diffagent process"):
            import_dump(second, write_dump(tmp_path / "d.jsonl", [checkpoint(1)]))
        assert import_dump(second, tmp_path / "d.jsonl").changed == 1  # once the first is done


def test_missing_dump_and_unopenable_store_are_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["catalog", "import", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and result.output.startswith("error: no such dump file")
    (tmp_path / "home").write_text("a file where the home folder should be")
    result = runner.invoke(app, ["catalog", "stats"], env={"DIFFAGENT_HOME": str(tmp_path / "home")})
    assert result.exit_code == 2 and result.output.startswith("error: DIFFAGENT_HOME")
    assert result.output.count("\n") == 1


def test_store_errors_are_diffagent_errors() -> None:
    assert issubclass(StoreError, Exception) and not issubclass(StoreError, sqlite3.Error)
