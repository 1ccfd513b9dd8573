"""``diffagent select`` and ``diffagent eval`` end to end on a small catalogue (``dump_records``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import copy_catalog, link_agent_cache
from diffagent.catalog import Store, validate_call
from diffagent.cli import app
from diffagent.schema import Answer, APICall

runner = CliRunner()


@pytest.fixture(scope="module")
def prepared_home(dump_catalog: Path, agent_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DIFFAGENT_HOME with the dump records and their bench (the session's copy, whose default agent is
    built once a session), made once for the module."""
    home = tmp_path_factory.mktemp("cli-home")
    copy_catalog(dump_catalog, home)
    link_agent_cache(home, agent_cache)
    return home


@pytest.fixture
def home(prepared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DIFFAGENT_HOME", str(prepared_home))
    return prepared_home


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and fragment in result.output


def test_batch_answers_every_line_in_order(home: Path, tmp_path: Path) -> None:
    batch = tmp_path / "in.jsonl"
    batch.write_text(
        '{"id": 7, "prompt": "a castle on a hill at sunset"}\n\n'
        '{"id": "b", "prompt": "portrait photo of an old man"}\n'
        '{"id": 3, "prompt": "anime girl, cherry blossoms"}\n'
    )
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["select", "--batch", str(batch), "--out", str(out), "--agent", "tfidf"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == [7, "b", 3]
    with Store(home / "catalog.sqlite") as store:
        for row in rows:
            assert set(row) == {"id", "api", "alternatives", "low_confidence", "latency_ms"}
            assert validate_call(store, APICall.model_validate(row["api"])) == []
            assert len(row["alternatives"]) == 5 and all("score" in alt for alt in row["alternatives"])
            assert row["latency_ms"] > 0


def test_a_batch_shared_among_worker_processes_gets_the_same_answers(home: Path, tmp_path: Path) -> None:
    subjects = ["a castle on a hill", "portrait photo of an old man", "anime girl, cherry blossoms", "a cat"]
    batch = tmp_path / "in.jsonl"
    batch.write_text(
        "".join(json.dumps({"id": i, "prompt": f"{subjects[i % 4]}, {i}"}) + "\n" for i in range(200))
    )
    rows = {}
    for workers in ("1", "2"):
        out = tmp_path / f"out-{workers}.jsonl"
        result = runner.invoke(
            app, ["select", "--batch", str(batch), "--out", str(out), "--workers", workers]
        )
        assert result.exit_code == 0, result.output
        rows[workers] = [
            {key: value for key, value in json.loads(line).items() if key != "latency_ms"}
            for line in out.read_text().splitlines()
        ]
    assert [row["id"] for row in rows["2"]] == list(range(200))
    assert rows["2"] == rows["1"]


def test_a_malformed_batch_line_is_named_and_nothing_is_written(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    for number, bad in (
        (2, "{not json"),
        (2, '["a list"]'),
        (2, '{"id": 2}'),
        (2, '{"id": 2, "prompt": "   "}'),
        (2, '{"id": true, "prompt": "a cat"}'),
    ):
        batch = tmp_path / "in.jsonl"
        batch.write_text('{"id": 1, "prompt": "a dog"}\n' + bad + "\n")
        result = runner.invoke(
            app, ["select", "--batch", str(batch), "--out", str(out), "--agent", "popular"]
        )
        _one_line_error(result, f"in.jsonl:{number}:")
    assert out.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "give either a PROMPT or --batch"),
        (["a cat", "--batch", "x.jsonl", "--out", "y.jsonl"], "give either a PROMPT or --batch"),
        (["--batch", "x.jsonl"], "--batch needs --out"),
        (["a cat", "--out", "y.jsonl"], "--out goes with --batch"),
        (["   "], "the prompt is empty"),
        (["--batch", "missing.jsonl", "--out", "y.jsonl"], "no such batch file"),
        (["a cat", "--agent", "nope"], "unknown agent 'nope'"),
    ],
)
def test_bad_select_input_is_one_line(home: Path, args: list[str], fragment: str) -> None:
    _one_line_error(runner.invoke(app, ["select", *args]), fragment)


def test_select_json_is_an_answer(home: Path) -> None:
    result = runner.invoke(
        app, ["select", "a cyberpunk city at night", "--json", "--agent", "keyword", "--k", "3"]
    )
    assert result.exit_code == 0, result.output
    answer = Answer.model_validate_json(result.stdout)
    assert len(answer.alternatives) == 3


def test_select_prints_a_summary(home: Path) -> None:
    result = runner.invoke(
        app, ["select", "a cyberpunk city at night", "--agent", "popular"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "checkpoint" in result.stdout and "alternatives" in result.stdout


def test_eval_json_rows(home: Path) -> None:
    args = [
        "eval",
        "--json",
        "--agent",
        "popular",
        "--agent",
        "tfidf",
        "--limit",
        "20",
        "--latency-prompts",
        "3",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [row["agent"] for row in rows] == ["popular", "tfidf"]
    for row in rows:
        assert row["n"] == 20
        for key in ("model@1", "model@5", "base@1", "hallucination", "sampler", "steps", "cfg", "params"):
            assert 0 <= row[key] <= 1 and 0 <= row[f"novel/{key}"] <= 1
        assert row["latency_ms_p50"] > 0 and row["prompts_per_s"] > 0


def test_eval_markdown_on_an_external_pairs_file(home: Path, tmp_path: Path) -> None:
    external = tmp_path / "external.jsonl"
    shutil.copy(home / "bench" / "val.jsonl", external)
    result = runner.invoke(
        app, ["eval", "--pairs", str(external), "--agent", "random", "--latency-prompts", "2"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("| agent | pairs |") and "| random | all |" in result.stdout
    assert "| random | novel |" not in result.stdout  # val pairs carry no novel flags


def test_empty_catalogue_says_how_to_fill_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFAGENT_HOME", str(tmp_path))
    _one_line_error(runner.invoke(app, ["select", "a cat", "--agent", "popular"]), "diffagent catalog import")
    _one_line_error(runner.invoke(app, ["eval", "--agent", "popular"]), "diffagent catalog import")


def test_select_imports_only_its_own_command(home: Path) -> None:
    """A warm `select --json` imports neither the other commands' modules (httpx for generate, the
    trainers' options) nor rich (nothing is printed on a terminal); `--help` still lists every command."""
    import subprocess
    import sys

    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(' '.join(sorted(sys.modules)), file=sys.stderr))\n"
        "sys.argv = ['diffagent', 'select', 'a castle at sunset', '--json']\n"
        "from diffagent.cli import main\n"
        "main()\n"
    )
    assert runner.invoke(app, ["select", "a castle at sunset", "--json"]).exit_code == 0  # warm: cached
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert Answer.model_validate_json(done.stdout).api.checkpoint.name
    loaded = set(done.stderr.split())
    assert "diffagent.cli.select" in loaded
    others = {"diffagent.cli.generate", "diffagent.cli.train", "diffagent.cli.bench", "diffagent.cli.library"}
    assert not loaded & (others | {"httpx", "rich", "rich.console"})
    listed = runner.invoke(app, ["--help"])
    assert listed.exit_code == 0
    for name in ("select", "eval", "serve", "generate", "catalog", "bench", "train", "library", "reward"):
        assert f" {name} " in listed.output
