"""Seeded random damage to a dump and to a batch file: the importer and the batch reader either answer
or say one line, and never leave catalogue text that could steer a generator. Runs in a few seconds."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from _hostile import checkpoint, lora
from diffagent.catalog import Store, import_dump
from diffagent.cli.select import read_prompts
from diffagent.errors import UserInputError
from diffagent.textsafety import has_generator_syntax, is_safe_file_name, text_problem

SEEDS = range(120)

FRAGMENTS = [
    b"\\ud800", b"\\udfff", b"\x00", b"\x1b[2J", b"<lora:x:9>", b"../", b"9" * 30, b"-" + b"9" * 25,
    b"[" * 3000, b"{" * 50, b'"', b"\\", b"\xff", b"\xc3", b"\n", b"1e999", b"null", b"true", b'"id":',
    b'"Size":"9999999999x9"',
]  # fmt: skip


def _mutate(rng: random.Random, blob: bytes) -> bytes:
    data = bytearray(blob)
    for _ in range(rng.randint(1, 6)):
        where = rng.randrange(len(data) + 1)
        action = rng.random()
        if action < 0.3 and data:
            data[min(where, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif action < 0.55:
            data[where:where] = rng.choice(FRAGMENTS)
        elif action < 0.75:
            del data[where : where + rng.randint(1, 40)]
        elif action < 0.9:
            line_start = data.rfind(b"\n", 0, where) + 1
            line_end = data.find(b"\n", where)
            data[line_end:line_end] = b"\n" + data[line_start:line_end]  # a duplicate line (same id)
        else:
            del data[where:]
    return bytes(data)


def _dump() -> bytes:
    records = [checkpoint(1), lora(2), checkpoint(3, name="Third"), lora(4, words=["plain"]), checkpoint(5)]
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _assert_consistent_and_clean(store: Store) -> None:
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert not store.conn.in_transaction
    for (words,) in store.conn.execute("SELECT trained_words FROM versions"):
        assert all(not has_generator_syntax(w) and text_problem(w) is None for w in json.loads(words))
    for (name,) in store.conn.execute("SELECT name FROM files WHERE name IS NOT NULL"):
        assert is_safe_file_name(name)
    for (name,) in store.conn.execute("SELECT name FROM models"):
        assert name and text_problem(name) is None


@pytest.mark.parametrize("compressed", [False, True])
def test_fuzzed_dumps_import_what_is_good_and_count_the_rest(tmp_path: Path, compressed: bool) -> None:
    clean = _dump()
    reasons: set[str] = set()
    damaged = imported = 0
    for seed in SEEDS:
        blob = _mutate(random.Random(seed), gzip.compress(clean) if compressed else clean)
        path = tmp_path / ("dump.jsonl.gz" if compressed else "dump.jsonl")
        path.write_bytes(blob)
        with Store() as store:
            report = import_dump(store, path)
            _assert_consistent_and_clean(store)
            counted = report.changed + report.unchanged + report.malformed_lines + report.malformed_records
            assert counted == report.lines, (seed, report)
            assert sum(report.skipped.values()) == report.malformed_lines + report.malformed_records
            assert store.stats()["models"] == report.changed
            assert "\n" not in report.summary()
            again = import_dump(store, path)  # idempotent whatever the damage
            assert again.changed == 0, (seed, again)
        reasons |= set(report.skipped)
        damaged += report.damaged is not None
        imported += report.changed > 0
    assert imported  # the mutations exercise the outcomes they are meant to
    assert damaged if compressed else len(reasons) >= 3


def test_fuzzed_batch_files_answer_or_name_the_line(tmp_path: Path) -> None:
    lines = [{"id": i, "prompt": p} for i, p in enumerate(["a cat", "a dog on a mat", "café at night"])]
    clean = b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)
    answered = refused = 0
    for seed in SEEDS:
        path = tmp_path / "in.jsonl"
        path.write_bytes(_mutate(random.Random(seed), clean))
        try:
            items = read_prompts(path)
        except UserInputError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path)), (seed, exc)
            refused += 1
            continue
        answered += 1
        for item_id, prompt in items:
            prompt.encode("utf-8")  # every prompt can be answered and written back out
            assert isinstance(item_id, int | str) and prompt.strip()
            if isinstance(item_id, str):
                item_id.encode("utf-8")
    assert answered and refused  # the mutations exercise both outcomes
