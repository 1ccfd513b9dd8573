"""The live crawler against a real HTTP server on 127.0.0.1 that serves dump records as API pages."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from conftest import renumbered
from diffagent.catalog import CrawlError, CrawlQuery, RetryPolicy, Store, crawl
from diffagent.cli import app

TOKEN = "tok-5ecret-7d2f9a"
PAGE = 25
FAST = RetryPolicy(max_retries=8, base_delay=0.001, max_delay=0.01)


class FakeCivitai:
    """``GET /api/v1/models`` over HTTP with cursor pages, filters and injectable faults.

    ``faults[page]`` is a list of faults served, one per request, before that page is served intact:
    ``"429"`` (Retry-After in seconds), ``"429-date"`` (Retry-After as an HTTP date), ``"500"``, ``"503"``,
    ``"slow"`` (answers after the client's timeout), ``"truncated"`` (half a JSON body), ``"cut"`` (the
    connection drops mid-body), ``"html"`` (a 200 that is no JSON). ``down_from`` drops every connection
    asking for that page or a later one, like a server that died.
    """

    def __init__(self, items: list, legacy: bool = False) -> None:
        self.items = items
        self.legacy = legacy
        self.faults: dict[int, list[str]] = {}
        self.down_from: int | None = None
        self.require_token: str | None = None
        self.slow_s = 1.5
        self.requests: list[tuple[int, dict[str, list[str]], str | None]] = []
        self.image_requests: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    fake.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def pages_requested(self) -> list[int]:
        return [page for page, _, _ in self.requests]

    def _select(self, params: dict[str, list[str]]) -> list:
        types, bases = params.get("types"), params.get("baseModels")
        out = []
        for item in self.items:
            if isinstance(item, dict) and isinstance(item.get("id"), int):  # malformed ones pass
                if types and item.get("type") not in types:
                    continue
                if bases and not any(v.get("baseModel") in bases for v in item.get("modelVersions", [])):
                    continue
                if params.get("nsfw") == ["false"] and item.get("nsfw") is True:
                    continue
            out.append(item)
        return out

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        params = parse_qs(url.query)
        if url.path == "/api/v1/images":  # versions without examples: the dump's have none elsewhere
            self.image_requests.append(params)
            return self._send(request, 200, b'{"items": [], "metadata": {}}')
        if url.path != "/api/v1/models":
            return self._send(request, 404, b'{"error": "not found"}')
        limit = int(params.get("limit", ["100"])[0])
        if self.legacy:
            offset = (int(params.get("page", ["1"])[0]) - 1) * limit
        else:
            offset = int(params["cursor"][0].split("|")[0]) if "cursor" in params else 0
        page = offset // limit
        self.requests.append((page, params, request.headers.get("Authorization")))
        if self.require_token and request.headers.get("Authorization") != f"Bearer {self.require_token}":
            return self._send(request, 401, b'{"error": "unauthorized"}')
        if self.down_from is not None and page >= self.down_from:
            request.close_connection = True
            return None
        selected = self._select(params)
        items = selected[offset : offset + limit]
        metadata: dict = {"currentPage": page + 1, "pageSize": limit}
        if offset + limit < len(selected):
            if self.legacy:
                query = url.query.replace(f"page={page + 1}", "").strip("&")
                # a foreign host: the crawler must take only the query string from it
                metadata["nextPage"] = f"http://elsewhere.invalid/api/v1/models?{query}&page={page + 2}"
            else:
                metadata["nextCursor"] = f"{offset + limit}|{selected[offset + limit - 1]['id']}"
                metadata["nextPage"] = f"{self.url}/models?cursor={metadata['nextCursor']}"
        body = json.dumps({"items": items, "metadata": metadata}).encode()
        fault = self.faults.get(page, []).pop(0) if self.faults.get(page) else None
        if fault == "429":
            return self._send(request, 429, b"{}", {"Retry-After": "3"})
        if fault == "429-date":
            return self._send(request, 429, b"{}", {"Retry-After": formatdate(time.time() + 40, usegmt=True)})
        if fault in ("500", "503"):
            return self._send(request, int(fault), b"<html>oops</html>")
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault == "truncated":
            body = body[: len(body) // 2]
        if fault == "html":
            body = b"<html>maintenance</html>"
        if fault == "cut":
            request.send_response(200)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body[: len(body) // 3])
            request.close_connection = True
            return None
        return self._send(request, 200, body)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict | None = None) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(body)


MALFORMED = [{"name": "a record without an id"}, "not an object", {"id": "7", "name": "string id"}]


@pytest.fixture
def served(dump_records: list[dict]) -> list:
    """120 safe dump models (renumbered copies where the dump holds fewer) with three malformed items among
    them; the crawl asks for ``nsfw=false``, so an ``nsfw`` model would never come back."""
    items: list = renumbered([r for r in dump_records if r.get("nsfw") is not True], 120)
    for position, bad in zip((10, 40, 90), MALFORMED, strict=True):
        items.insert(position, bad)
    return items


@pytest.fixture
def fake(served: list) -> Iterator[FakeCivitai]:
    server = FakeCivitai(served)
    yield server
    server.close()


def _expected(records: list) -> dict[str, int]:
    good = [r for r in records if isinstance(r, dict) and isinstance(r.get("id"), int)]
    versions = {v["id"]: v for r in good for v in r["modelVersions"]}
    return {
        "models": len(good),
        "versions": len(versions),
        "files": sum(len(v["files"]) for v in versions.values()),
        "images": len({(v["id"], i["id"]) for v in versions.values() for i in v["images"]}),
    }


def _counts(store: Store) -> dict[str, int]:
    stats = store.stats()
    return {key: stats[key] for key in ("models", "versions", "files", "images")}


def _crawl_state(store: Store) -> list[str]:
    return [row[0] for row in store.conn.execute("SELECT key FROM state WHERE key LIKE 'crawl:%'")]


def test_faults_are_retried_and_everything_lands_once(
    fake: FakeCivitai,
    served: list,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.faults = {
        0: ["429"],
        1: ["500", "503"],
        2: ["slow", "truncated"],
        3: ["cut", "html"],
        4: ["429-date"],
    }
    slept: list[float] = []
    store = Store()
    report = crawl(store, CrawlQuery(page_size=PAGE), base_url=fake.url, token=TOKEN, timeout=0.5,
                   retry=FAST, sleep=slept.append)  # fmt: skip

    assert report.finished and report.malformed == len(MALFORMED)
    assert report.changed == _expected(served)["models"] and report.fetched == len(served)
    assert _counts(store) == _expected(served)
    assert store.conn.execute("SELECT COUNT(*) FROM model_fts").fetchone()[0] == len(served) - len(MALFORMED)
    assert _crawl_state(store) == []
    # each page was asked for once plus once per fault (a slow answer may cost more than one timeout)
    assert report.retries >= 8 and report.pages == 5
    assert set(fake.pages_requested()) == set(range(5))
    # Retry-After is honoured: 3 s from the first 429, about 40 s from the dated one
    assert slept[0] >= 3 and max(slept) >= 35
    # the token goes in the header of every request and nowhere else
    assert {auth for _, _, auth in fake.requests} == {f"Bearer {TOKEN}"}
    captured = capsys.readouterr()
    for text in (captured.out, captured.err, caplog.text, report.summary(), repr(report)):
        assert TOKEN not in text


def test_query_parameters_are_sent(fake: FakeCivitai) -> None:
    query = CrawlQuery(types=("Checkpoint",), base_models=("SD 1.5", "Other"), sort="Newest", page_size=PAGE)
    crawl(Store(), query, limit=30, base_url=fake.url, token="", retry=FAST)
    first = fake.requests[0]
    assert first[1]["types"] == ["Checkpoint"] and first[1]["baseModels"] == ["SD 1.5", "Other"]
    assert first[1]["sort"] == ["Newest"] and first[1]["nsfw"] == ["false"]
    assert first[2] is None  # no token, no Authorization header


def test_limit_stops_exactly(fake: FakeCivitai, served: list) -> None:
    store = Store()
    report = crawl(store, CrawlQuery(page_size=PAGE), limit=30, base_url=fake.url, retry=FAST)
    assert report.finished and report.fetched == 30 and fake.pages_requested() == [0, 1]
    assert _counts(store) == _expected(served[:30])
    assert _crawl_state(store) == []


def test_exhausted_retries_give_one_clean_error(fake: FakeCivitai) -> None:
    fake.faults = {0: ["500"] * 5}
    store = Store()
    with pytest.raises(CrawlError) as caught:
        crawl(store, CrawlQuery(page_size=PAGE), base_url=fake.url, token=TOKEN,
              retry=RetryPolicy(max_retries=2, base_delay=0.001), sleep=lambda _: None)  # fmt: skip
    message = str(caught.value)
    assert "after 3 attempts" in message and "HTTP 500" in message and "\n" not in message
    assert len(fake.requests) == 3 and store.is_empty()
    text = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
    assert TOKEN not in text


def test_refusal_is_not_retried_and_hides_the_token(fake: FakeCivitai) -> None:
    fake.require_token = "the-right-token"
    with pytest.raises(CrawlError, match="CIVITAI_API_TOKEN") as caught:
        crawl(Store(), CrawlQuery(page_size=PAGE), base_url=fake.url, token=TOKEN, retry=FAST)
    assert len(fake.requests) == 1 and TOKEN not in str(caught.value)


def test_a_long_retry_after_stops_the_crawl_for_a_later_resume(fake: FakeCivitai) -> None:
    fake.faults = {1: ["429-date"]}
    store = Store()
    with pytest.raises(CrawlError, match="rerun later"):
        crawl(store, CrawlQuery(page_size=PAGE), base_url=fake.url,
              retry=RetryPolicy(max_retry_after=10), sleep=lambda _: None)  # fmt: skip
    assert store.stats()["models"] == PAGE - 1 and len(_crawl_state(store)) == 1  # one malformed


def test_interrupted_crawl_resumes_from_the_saved_cursor(fake: FakeCivitai, served: list) -> None:
    store = Store()
    query = CrawlQuery(page_size=PAGE)

    def interrupt_after_two_pages(done: int, limit: int | None) -> None:
        if done >= 2 * PAGE:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        crawl(store, query, base_url=fake.url, retry=FAST, progress=interrupt_after_two_pages)
    assert fake.pages_requested() == [0, 1] and len(_crawl_state(store)) == 1
    revision = store.revision

    # the server dies on page 3: page 2 is committed, the cursor of page 3 saved
    fake.requests.clear()
    fake.down_from = 3
    with pytest.raises(CrawlError, match="connection failed"):
        crawl(store, query, base_url=fake.url, retry=RetryPolicy(max_retries=1, base_delay=0.001))
    assert fake.pages_requested() == [2, 3, 3]
    assert store.revision > revision

    fake.requests.clear()
    fake.down_from = None
    report = crawl(store, query, base_url=fake.url, retry=FAST)
    assert report.resumed and report.finished
    assert fake.pages_requested() == [3, 4]  # nothing before the saved cursor is fetched again
    assert _counts(store) == _expected(served)
    assert _crawl_state(store) == []

    # another query does not pick up this position, and a finished crawl starts from the first page
    fake.requests.clear()
    again = crawl(store, query, base_url=fake.url, retry=FAST)
    assert not again.resumed and fake.pages_requested() == [0, 1, 2, 3, 4]


def test_second_full_crawl_changes_nothing(fake: FakeCivitai, served: list) -> None:
    store = Store()
    first = crawl(store, CrawlQuery(page_size=PAGE), base_url=fake.url, retry=FAST)
    counts, revision = _counts(store), store.revision
    assert first.changed == counts["models"] and revision > 0
    second = crawl(store, CrawlQuery(page_size=PAGE), base_url=fake.url, retry=FAST)
    assert second.changed == 0 and second.unchanged == counts["models"]
    assert _counts(store) == counts and store.revision == revision


def test_next_page_urls_are_followed_on_our_own_host(served: list) -> None:
    legacy = FakeCivitai(served, legacy=True)
    try:
        store = Store()
        report = crawl(store, CrawlQuery(page_size=PAGE), base_url=legacy.url, token=TOKEN, retry=FAST)
    finally:
        legacy.close()
    assert report.finished and legacy.pages_requested() == [0, 1, 2, 3, 4]
    assert _counts(store) == _expected(served)


def test_cli_sync_and_ensure(fake: FakeCivitai, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CIVITAI_API_TOKEN", TOKEN)
    runner = CliRunner()
    result = runner.invoke(app, ["catalog", "sync", "--base-url", fake.url, "--limit", "30", "--types",
                                 "Checkpoint,LORA"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "30 models" in result.output and TOKEN not in result.output
    assert fake.requests[0][1]["types"] == ["Checkpoint", "LORA"]
    assert {auth for _, _, auth in fake.requests} == {f"Bearer {TOKEN}"}

    failed = runner.invoke(app, ["catalog", "sync", "--base-url", fake.url + "/nowhere", "--limit", "5"])
    assert failed.exit_code == 1
    assert failed.output.strip().count("\n") == 0 and "HTTP 404" in failed.output

    # ensure crawls when there is no dump, from DIFFAGENT_CIVITAI_URL, into an empty store
    monkeypatch.setenv("DIFFAGENT_HOME", str(tmp_path / "fresh"))
    monkeypatch.setenv("DIFFAGENT_CIVITAI_URL", fake.url)
    ensured = runner.invoke(
        app, ["catalog", "ensure", "--dump", str(tmp_path / "none.jsonl.gz"), "--limit", "20"]
    )
    assert ensured.exit_code == 0, ensured.output
    with Store(tmp_path / "fresh" / "catalog.sqlite") as store:
        assert store.stats()["models"] == 20 - sum(1 for bad in fake.items[:20] if bad in MALFORMED)
