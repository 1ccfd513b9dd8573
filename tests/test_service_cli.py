"""``diffagent serve``: refuses what it cannot serve, and answers from several worker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from diffagent.cli import app
from live_server import file_store

_CLI = "from diffagent.cli import main; main()"


def test_serve_refuses_the_llm_agent_and_an_empty_home() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--agent", "llm"])
    assert result.exit_code != 0 and "offers the agents" in result.output
    result = runner.invoke(app, ["serve", "--agent", "tfidf"])  # the test's DIFFAGENT_HOME is empty
    assert result.exit_code != 0 and "no catalogue at" in result.output
    result = runner.invoke(app, ["serve", "--generate", "midjourney"])
    assert result.exit_code == 2 and "generate backend must be one of" in result.output
    result = runner.invoke(
        app, ["serve", "--generate", "diffusers", "--generator-url", "http://127.0.0.1:7860"]
    )
    assert result.exit_code == 2 and "for the a1111 and comfyui backends" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_with_two_workers(dump_records: list[dict], tmp_path: Path) -> None:
    home = tmp_path / "home"
    file_store(dump_records, home / "catalog.sqlite")
    port = _free_port()
    env = {**os.environ, "DIFFAGENT_HOME": str(home), "DIFFAGENT_API_KEY": "k"}
    command = [sys.executable, "-c", _CLI, "serve", "--port", str(port), "--workers", "2", "--agent", "tfidf"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                pytest.fail(f"serve exited: {server.stdout.read() if server.stdout else ''}")
            time.sleep(0.1)
        auth = {"Authorization": "Bearer k"}
        with httpx.Client(base_url=url, headers=auth, timeout=120) as http:
            answers = [http.post("/select", json={"prompt": f"a red car, take {i}"}) for i in range(8)]
            assert (
                http.post("/select", json={"prompt": "a red car"}, headers={"Authorization": "x"}).status_code
                == 401
            )
        assert [a.status_code for a in answers] == [200] * 8
    finally:
        server.send_signal(signal.SIGINT)
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert output.count("Started server process") >= 2, output
    assert "POST /select 200" in output  # the access log, without the prompt
    assert "red car" not in output
