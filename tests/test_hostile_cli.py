"""Careless input at the command line: one line on stderr and a non-zero exit, never a traceback,
never a clobbered file, never catalogue text interpreted by the terminal."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from _hostile import checkpoint, lora, write_dump
from _servers import serve
from diffagent._io import atomic_open, write_jsonl
from diffagent.catalog import CrawlError, Store, crawl, import_dump
from diffagent.cli import app
from diffagent.cli import select as select_cli
from diffagent.client import DiffAgent
from diffagent.errors import UnsafeOutputError, UserInputError
from diffagent.schema import Alternative, Answer, APICall, Evidence

runner = CliRunner()


def _one_line(result, code: int = 2, fragment: str = "") -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert fragment in result.output, result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["select", "--bogus"], "No such option: --bogus"),
        (["catalog", "import"], "Missing argument"),
        (["select", "x", "--k", "0"], "--k"),
        (["select", "a", "--agent", "nope"], "unknown agent"),
        (["select", "caf\udce9"], "argument 2 is not valid UTF-8"),  # how Python keeps invalid argv bytes
        (["select", "--batch", "in.jsonl"], "--batch needs --out"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], fragment: str) -> None:
    _one_line(runner.invoke(app, args), 2, fragment)


# -- the batch reader ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b'{"id": 1, "prompt": "caf\xe9"}', "not UTF-8"),
        (b'{"id": 1, "prompt": "lone \\ud800"}', "lone surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"id": ' + b"7" * 5000 + b', "prompt": "x"}', "number is too long"),
        (b'{"id": true, "prompt": "x"}', "'id' must be"),
    ],
)
def test_a_bad_batch_line_is_one_line_before_any_answer(tmp_path: Path, line: bytes, fragment: str) -> None:
    batch = tmp_path / "in.jsonl"
    batch.write_bytes(b'{"id": 0, "prompt": "fine"}\n' + line + b"\n")
    result = runner.invoke(app, ["select", "--batch", str(batch), "--out", str(tmp_path / "out.jsonl")])
    _one_line(result, 2, fragment)
    assert "in.jsonl:2: " in result.output
    assert not (tmp_path / "out.jsonl").exists()


def _batch(tmp_path: Path) -> Path:
    batch = tmp_path / "in.jsonl"
    batch.write_text('{"id": 1, "prompt": "a cat"}\n')
    return batch


def _make_device(path: Path) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # the null device's numbers, in tmp_path
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")


@pytest.mark.parametrize(
    "kind", ["folder", "fifo", "device", "input", "link to fifo", "proc", "under a file"]
)
def test_batch_out_never_replaces_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    batch = _batch(tmp_path)
    out = tmp_path / "out"
    if kind == "folder":
        out.mkdir()
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "device":
        _make_device(out)
    elif kind == "input":
        out = batch
    elif kind == "link to fifo":
        os.mkfifo(tmp_path / "fifo")
        out.symlink_to(tmp_path / "fifo")
    elif kind == "proc":
        out = Path("/proc/self/diffagent-out.jsonl")
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out.jsonl"
    before = out.lstat() if out.exists() or out.is_symlink() else None
    result = runner.invoke(app, ["select", "--batch", str(batch), "--out", str(out)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "refusing to write" in result.output or "cannot write" in result.output
    if before is not None:
        after = out.lstat()
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert batch.read_text() == '{"id": 1, "prompt": "a cat"}\n'


def test_io_writers_refuse_special_files_and_write_through_links(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    _make_device(tmp_path / "dev")
    for name in ("fifo", "dev"):
        with pytest.raises(UnsafeOutputError), atomic_open(tmp_path / name) as handle:
            handle.write("x")
    (tmp_path / "a.jsonl").write_text("input\n")
    with pytest.raises(UnsafeOutputError, match="it is the input"):
        write_jsonl(tmp_path / "a.jsonl", [], inputs=[tmp_path / "a.jsonl"])
    assert (tmp_path / "a.jsonl").read_text() == "input\n"
    (tmp_path / "real.jsonl").write_text("old\n")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "real.jsonl")
    write_jsonl(tmp_path / "link.jsonl", [{"a": 1}])
    assert (tmp_path / "link.jsonl").is_symlink() and (tmp_path / "real.jsonl").read_text() == '{"a":1}\n'
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_select_batch_refuses_a_single_string() -> None:
    agent = DiffAgent.__new__(DiffAgent)  # the check comes before any agent or store is needed
    with pytest.raises(TypeError, match="list of prompts"):
        agent.select_batch("abc")


# -- terminal output -----------------------------------------------------------------------------------

HOSTILE_TEXT = "a cat [/] on a mat [cat:dog:0.5] [/set] \x1b[2J\x1b]0;pwned\x07 [bold]x"


def _answer() -> Answer:
    call = APICall.model_validate(
        {
            "checkpoint": {"model_id": 1, "version_id": 10, "name": "[red]Ckpt[/] \x1b[2J",
                           "base_model": "SD 1.5"},
            "loras": [{"model_id": 2, "version_id": 20, "name": "L [/]", "weight": 1.0,
                       "trigger_words": ["[b]w\x07"]}],
            "prompt": HOSTILE_TEXT, "negative_prompt": "[/]", "sampler": "Euler a", "steps": 20,
            "cfg_scale": 7.0, "width": 512, "height": 512, "clip_skip": 1, "seed": -1,
        }
    )  # fmt: skip
    alternatives = [Alternative(**call.model_dump(), score=0.5)] * 2
    evidence = [
        Evidence(image_id=1, model_id=1, version_id=10, prompt=HOSTILE_TEXT, url=None, similarity=0.9)
    ]
    return Answer(api=call, alternatives=alternatives, evidence=evidence, low_confidence=False)


def test_readable_answer_prints_catalogue_text_literally(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no cell wraps, so every literal stays on one line
    select_cli._print_answer(_answer())
    text = capsys.readouterr().out
    for literal in ("[/]", "[cat:dog:0.5]", "[/set]", "[red]Ckpt[/]", "[bold]x", "[b]w"):
        assert literal in text, literal
    assert "\x1b" not in text and "\x07" not in text and "pwned" not in text


def test_catalog_search_prints_hostile_names_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIFFAGENT_HOME", str(tmp_path))
    hostile = checkpoint(1, name="[/set] cat [bold]")
    with Store(tmp_path / "catalog.sqlite") as store:
        import_dump(store, write_dump(tmp_path / "d.jsonl", [hostile, lora(2)]))
    monkeypatch.setenv("COLUMNS", "300")
    result = runner.invoke(app, ["catalog", "search", "cat", "--type", "Checkpoint"])
    assert result.exit_code == 0, result.output
    assert "[/set] cat [bold]" in result.output and "\x1b" not in result.output
    assert runner.invoke(app, ["catalog", "stats"]).exit_code == 0


# -- secrets -------------------------------------------------------------------------------------------

TOKEN = "s3cr3t/tok+en=="


@contextlib.contextmanager
def _echo_server() -> Iterator[str]:
    """Answers 400 with a body that echoes the request's credentials in every form a server might."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            body = f"bad request {auth} {quote(auth, safe='')} {base64.b64encode(auth.encode()).decode()}"
            body += f" {quote(TOKEN, safe='')} {base64.b64encode(TOKEN.encode()).decode()} {self.path}"
            data = body.encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serve(Handler) as url:
        yield url.removeprefix("http://")


def test_crawl_errors_show_no_password_and_no_copy_of_the_token() -> None:
    with _echo_server() as host, pytest.raises(CrawlError) as failure:
        crawl(Store(), base_url=f"http://alice:pa%24%24word@{host}/api/v1", token=TOKEN, limit=5)
    message = str(failure.value)
    assert "HTTP 400" in message and "***@" in message
    for secret in (TOKEN, quote(TOKEN, safe=""), base64.b64encode(TOKEN.encode()).decode(), "pa%24%24word",
                   "pa$$word", base64.b64encode(b"alice:pa$$word").decode()):  # fmt: skip
        assert secret not in message, secret


def test_a_non_ascii_token_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserInputError, match="CIVITAI_API_TOKEN"):
        crawl(Store(), base_url="http://127.0.0.1:9/api/v1", token="tökén")
    monkeypatch.setenv("CIVITAI_API_TOKEN", "tökén")
    result = runner.invoke(
        app, ["catalog", "sync", "--base-url", "http://127.0.0.1:9/api/v1", "--limit", "1"]
    )
    _one_line(result, 2, "CIVITAI_API_TOKEN")


def test_json_output_of_a_batch_is_valid(tmp_path: Path) -> None:
    """The rows a batch writes are plain JSON even for odd ids (a big integer, unicode)."""
    write_jsonl(tmp_path / "o.jsonl", [{"id": 2**70, "x": "ü"}])
    assert json.loads((tmp_path / "o.jsonl").read_text()) == {"id": 2**70, "x": "ü"}


@pytest.mark.parametrize("spec", ["folder", "someone/no-such-model-for-diffagent", "not a name!"])
def test_a_model_that_is_not_one_is_one_line(tmp_path: Path, spec: str) -> None:
    pytest.importorskip("torch")
    from diffagent.llm.models import resolve_base_model

    if spec == "folder":
        (tmp_path / "readme.txt").write_text("not a model")
        spec = str(tmp_path)
    with pytest.raises(UserInputError) as failure:
        resolve_base_model(spec)
    assert "\n" not in str(failure.value) and (
        "not a model folder" in str(failure.value) or "no model" in str(failure.value)
    )
