"""Crawl the live Civitai ``GET /api/v1/models`` endpoint into the store, page by page, resumably.

Each page of models is upserted first; then every version on it whose images carry no generation meta
(today's model pages often send none) gets its examples from ``GET /api/v1/images?modelVersionId=...
&withMeta=true``, each version committed with a mark that it was asked; only then is the position of the
next page committed. A crawl that is killed, interrupted or given up on therefore resumes from the last
finished page when rerun with the same query, and asks no version twice. The NSFW choice is always sent
explicitly (``nsfw`` to the models, ``browsingLevel`` to the images), since the API's defaults changed.
Transient failures (429, 5xx, timeouts, dropped connections, truncated JSON) are retried with exponential
backoff and jitter, honouring ``Retry-After``. The API token travels only in the ``Authorization`` header
of requests to the configured API root; it is never logged, printed or put in an error message.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

import httpx

from .. import __version__
from ..errors import DiffAgentError, UserInputError
from .meta import normalize_hash
from .store import MalformedRecord, Store

__all__ = [
    "DEFAULT_API_URL",
    "CrawlError",
    "CrawlQuery",
    "CrawlReport",
    "RetryPolicy",
    "api_root",
    "api_token",
    "crawl",
    "lookup_hash",
]

DEFAULT_API_URL = "https://civitai.com/api/v1"
"""The API root; ``DIFFAGENT_CIVITAI_URL`` or the ``base_url`` argument replace it."""

_STATE_PREFIX = "crawl:"


class CrawlError(DiffAgentError):
    """The crawl stopped: retries exhausted or a response that retrying cannot fix. Rerun to resume."""


@dataclass(frozen=True)
class CrawlQuery:
    """The filters of ``GET /api/v1/models``; equal queries share one resumable position."""

    types: tuple[str, ...] = ("Checkpoint", "LORA")
    base_models: tuple[str, ...] = ()
    nsfw: bool = False
    sort: str = "Most Downloaded"
    page_size: int = 100
    """Models per request (Civitai's ``limit`` parameter, at most 100)."""
    images_per_version: int = 50
    """Images asked of ``/images`` for a version without examples (``limit``, at most 200; 0: never ask)."""

    def params(self) -> list[tuple[str, str]]:
        """Query parameters of the first page (list parameters repeat, as the API expects)."""
        params = [("limit", str(self.page_size)), ("sort", self.sort), ("nsfw", str(self.nsfw).lower())]
        params += [("types", t) for t in self.types]
        params += [("baseModels", b) for b in self.base_models]
        return params

    def image_params(self, version_id: int) -> list[tuple[str, str]]:
        """``/images`` parameters for one version's examples: with meta, at the query's browsing level
        (PG only unless NSFW is asked for: PG | PG-13 | R | X | XXX)."""
        level = 31 if self.nsfw else 1
        return [
            ("modelVersionId", str(version_id)), ("limit", str(self.images_per_version)),
            ("withMeta", "true"), ("browsingLevel", str(level)), ("sort", "Most Reactions"),
        ]  # fmt: skip


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to insist on one page before giving up."""

    max_retries: int = 6
    """Retries after the first attempt of each request."""
    base_delay: float = 1.0
    """Seconds before the first retry; doubles on every further one."""
    max_delay: float = 60.0
    """Ceiling of the exponential backoff."""
    max_retry_after: float = 600.0
    """A ``Retry-After`` longer than this stops the crawl (rerun later to resume) instead of waiting."""


@dataclass
class CrawlReport:
    pages: int = 0
    fetched: int = 0
    """Models received by this run, malformed ones included."""
    changed: int = 0
    unchanged: int = 0
    malformed: int = 0
    image_requests: int = 0
    """``/images`` look-ups for versions whose model page carried no example with meta."""
    images: int = 0
    retries: int = 0
    resumed: bool = False
    """The crawl went on from a position saved by an earlier, interrupted run."""
    finished: bool = False
    """The last page or the limit was reached (the saved position is cleared)."""

    def summary(self) -> str:
        how = "resumed crawl" if self.resumed else "crawl"
        end = "finished" if self.finished else "stopped (rerun to resume)"
        return (
            f"{how} {end}: {self.pages} pages, {self.fetched} models: {self.changed} added or updated, "
            f"{self.unchanged} unchanged, {self.malformed} malformed skipped, {self.images} images from "
            f"{self.image_requests} version look-ups, {self.retries} retries"
        )


@dataclass
class _Position:
    """Where the crawl goes on: the next request's query parameters and the models fetched so far."""

    params: list[tuple[str, str]]
    fetched: int = 0


def _fingerprint(endpoint: str, query: CrawlQuery) -> str:
    blob = json.dumps([endpoint, sorted(query.params())], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _next_params(query: CrawlQuery, metadata: Any) -> list[tuple[str, str]] | None:
    """The next page's parameters from ``metadata.nextCursor`` or, failing that, ``metadata.nextPage``.

    Only the query string of ``nextPage`` is used: requests (and the token) always go to our own API root.
    """
    if not isinstance(metadata, dict):
        return None
    cursor = metadata.get("nextCursor")
    if isinstance(cursor, str | int) and not isinstance(cursor, bool) and str(cursor) != "":
        return [*query.params(), ("cursor", str(cursor))]
    page = metadata.get("nextPage")
    if isinstance(page, str) and page:
        params = parse_qsl(urlsplit(page).query, keep_blank_values=True)
        return params or None
    return None


class _Transient(Exception):
    """A failed attempt worth retrying, with the least wait the server asked for."""

    def __init__(self, reason: str, wait: float = 0.0) -> None:
        super().__init__(reason)
        self.reason, self.wait = reason, wait


class _NotFound(Exception):
    """HTTP 404 where absence is an answer (a hash Civitai does not know, a version gone since its page)."""


class _Client:
    """One ``httpx.Client`` plus the retry loop; knows the token but never shows it."""

    def __init__(
        self,
        endpoint: str,
        token: str | None,
        timeout: float,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
        report: CrawlReport,
    ) -> None:
        headers = {"User-Agent": f"diffagent/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.endpoint = endpoint
        self.shown = _without_userinfo(endpoint)
        """The endpoint as messages name it: without a ``user:password@`` part."""
        self._secrets = _secret_forms(token, endpoint)
        self.retry = retry
        self.sleep = sleep
        self.report = report
        # httpx drops the Authorization header on a redirect to another origin.
        self.http = httpx.Client(headers=headers, timeout=timeout, follow_redirects=True)

    def __repr__(self) -> str:
        return f"_Client({self.endpoint!r})"

    def close(self) -> None:
        self.http.close()

    def get_page(
        self, params: list[tuple[str, str]], endpoint: str | None = None, missing_ok: bool = False
    ) -> dict[str, Any]:
        """One page as a dict with an ``items`` list, after as many retries as the policy allows; a 404
        is an empty page where ``missing_ok``, else a CrawlError."""
        try:
            return self.get(params, endpoint, require_items=True)
        except _NotFound as gone:
            if missing_ok:
                return {"items": []}
            raise CrawlError(f"HTTP 404 from {gone}: check the API root (DIFFAGENT_CIVITAI_URL)") from None

    def get(
        self, params: list[tuple[str, str]], endpoint: str | None = None, require_items: bool = False
    ) -> dict[str, Any]:
        """One JSON object from ``endpoint`` (default: the models endpoint), retried as the policy allows."""
        policy = self.retry
        url = endpoint or self.endpoint
        for attempt in itertools.count():
            try:
                return self._attempt(params, url, require_items)
            except _Transient as failure:
                if attempt >= policy.max_retries:
                    raise CrawlError(
                        f"giving up on {_without_userinfo(url)} after {attempt + 1} attempts; "
                        f"last failure: {failure.reason}"
                    ) from None
                backoff = min(policy.max_delay, policy.base_delay * 2**attempt)
                self.report.retries += 1
                self.sleep(max(failure.wait, backoff * (0.5 + random.random() / 2)))
        raise AssertionError("itertools.count() never ends")

    def _attempt(self, params: list[tuple[str, str]], url: str, require_items: bool) -> dict[str, Any]:
        """One request; raises :class:`_Transient` for what a retry may fix, CrawlError for the rest."""
        try:
            response = self.http.get(url, params=tuple(params))
        except httpx.TimeoutException:
            raise _Transient("the request timed out") from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise CrawlError(f"request to {_without_userinfo(url)} failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            after = _retry_after(response.headers.get("Retry-After"))
            if after is not None and after > self.retry.max_retry_after:
                raise CrawlError(
                    f"{_without_userinfo(url)} asks to wait {after:.0f} s after HTTP {status}; "
                    "rerun later to resume the crawl"
                )
            raise _Transient(f"HTTP {status}", after or 0.0)
        if status == 404:
            raise _NotFound(url)
        if status != 200:
            raise CrawlError(self._refusal(response, url))
        page = self._decode(response, require_items)
        if page is None:
            raise _Transient("the response is not the JSON page expected (truncated or invalid JSON)")
        return page

    @staticmethod
    def _decode(response: httpx.Response, require_items: bool) -> dict[str, Any] | None:
        try:
            page = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(page, dict) or (require_items and not isinstance(page.get("items"), list)):
            return None
        return page

    def _refusal(self, response: httpx.Response, url: str) -> str:
        status = response.status_code
        if status in (401, 403):
            shown = _without_userinfo(url)
            return f"HTTP {status} from {shown}: the API refused the request; check CIVITAI_API_TOKEN"
        detail = " ".join(response.text[:200].split())
        for secret in self._secrets:  # a server that echoes the request must not put a secret in our message
            detail = detail.replace(secret, "***")
        return f"HTTP {status} from {_without_userinfo(url)}" + (f": {detail}" if detail else "")


def _without_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` part, which must never reach a message."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def _secret_forms(token: str | None, endpoint: str) -> list[str]:
    """The token and the URL's password as a server may echo them: raw, URL-encoded, base64."""
    parts = urlsplit(endpoint)
    password = parts.password
    secrets = [s for s in (token, password, unquote(password or "")) if s]
    basic = f"{unquote(parts.username or '')}:{unquote(password)}" if password else None
    forms = set()
    for secret in secrets:
        forms |= {secret, quote(secret, safe=""), quote_plus(secret)}
        for text in (secret, f"Bearer {secret}", *([basic] if basic else [])):
            encoded = base64.b64encode(text.encode()).decode()
            forms |= {
                encoded,
                encoded.rstrip("="),
                base64.urlsafe_b64encode(text.encode()).decode().rstrip("="),
            }
    return sorted(forms, key=len, reverse=True)  # longest first: a short form may sit inside a long one


def api_root(base_url: str | None = None) -> str:
    """The API root: ``base_url``, else ``DIFFAGENT_CIVITAI_URL``, else :data:`DEFAULT_API_URL`."""
    root = base_url or os.environ.get("DIFFAGENT_CIVITAI_URL") or DEFAULT_API_URL
    parts = urlsplit(root)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserInputError(f"the API root must be an http(s) URL, not {_without_userinfo(root)!r}")
    return root.rstrip("/")


def api_token(token: str | None = None) -> str:
    """``token``, else ``CIVITAI_API_TOKEN`` (``""`` sends none); one that an HTTP header cannot carry is a
    one-line error."""
    token = os.environ.get("CIVITAI_API_TOKEN", "").strip() if token is None else token
    if token and not (token.isascii() and token.isprintable()):
        raise UserInputError("CIVITAI_API_TOKEN holds a character an HTTP header cannot carry (non-ASCII?)")
    return token


def crawl(
    store: Store,
    query: CrawlQuery | None = None,
    *,
    limit: int | None = None,
    base_url: str | None = None,
    token: str | None = None,
    timeout: float = 60.0,
    retry: RetryPolicy | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CrawlReport:
    """Crawl ``query`` into ``store`` until the last page or ``limit`` models; returns what happened.

    ``base_url`` defaults to ``DIFFAGENT_CIVITAI_URL`` or :data:`DEFAULT_API_URL`; ``token`` defaults to
    ``CIVITAI_API_TOKEN`` (pass ``""`` to send none). ``progress(models, limit)`` is called after every
    committed page, counting the models of the runs it resumes too. Raises :class:`CrawlError` when a
    page cannot be had; the pages before it stay committed and a rerun with the same query resumes after
    them. ``limit`` counts the models of resumed runs too, and does not change where a crawl resumes.
    """
    query = query or CrawlQuery()
    if not 1 <= query.page_size <= 100:
        raise UserInputError(f"the page size must be within 1..100, not {query.page_size}")
    if not 0 <= query.images_per_version <= 200:
        raise UserInputError(f"images per version must be within 0..200, not {query.images_per_version}")
    if limit is not None and limit < 1:
        raise UserInputError(f"the limit must be a positive number of models, not {limit}")
    if limit is not None and limit < query.page_size:
        query = dataclasses.replace(query, page_size=limit)
    root = api_root(base_url)
    endpoint = root + "/models"
    token = api_token(token)
    key = _STATE_PREFIX + _fingerprint(endpoint, query)

    report = CrawlReport()
    position = _load_position(store, key)
    if position is None:
        position = _Position(params=query.params())
    else:
        report.resumed = True
    visited: set[tuple[tuple[str, str], ...]] = set()
    client = _Client(endpoint, token, timeout, retry or RetryPolicy(), sleep, report)
    try:
        while True:
            room = None if limit is None else limit - position.fetched
            if room is not None and room <= 0:  # resumed with a smaller limit than before
                items, following = [], None
            else:
                page = client.get_page(position.params)
                report.pages += 1
                visited.add(tuple(position.params))
                items = page["items"][:room]
                following = _next_params(query, page.get("metadata"))
            if following is not None and tuple(following) in visited:
                raise CrawlError(
                    f"{client.shown} sent a page position it had sent before; the crawl stops there"
                )
            with store.transaction():
                stored = _upsert_page(store, items, report)
            if query.images_per_version:
                _fetch_examples(store, client, root + "/images", query, stored, report)
            position.fetched += len(items)
            done = not items or following is None or (limit is not None and position.fetched >= limit)
            with store.transaction():
                if done:
                    store.set_state(key, None)
                else:
                    assert following is not None
                    position.params = following
                    store.set_state(key, _dump_position(position))
            report.fetched += len(items)
            if progress is not None:
                progress(position.fetched, limit)
            if done:
                report.finished = True
                return report
    finally:
        client.close()


def _upsert_page(store: Store, items: list[Any], report: CrawlReport) -> list[int]:
    """Upsert one page of models; returns the ids stored (changed or not)."""
    stored = []
    for item in items:
        try:
            changed = store.upsert_model(item)
        except MalformedRecord:
            report.malformed += 1
            continue
        stored.append(item["id"])
        report.changed += changed
        report.unchanged += not changed
    return stored


def _fetch_examples(
    store: Store, client: _Client, endpoint: str, query: CrawlQuery, model_ids: list[int], report: CrawlReport
) -> None:
    """One ``/images`` page with meta for each version of these models that has no example yet."""
    for version_id in store.versions_without_examples(model_ids):
        page = client.get_page(query.image_params(version_id), endpoint, missing_ok=True)
        report.image_requests += 1
        with store.transaction():
            report.images += store.add_images(version_id, page["items"])


def lookup_hash(
    digest: str, *, base_url: str | None = None, token: str | None = None, timeout: float = 30.0
) -> dict[str, Any] | None:
    """Civitai's ``GET /model-versions/by-hash/{hash}`` answer for a file hash (any of the six kinds),
    or None when Civitai knows no such file. Transient failures are retried a few times."""
    value = normalize_hash(digest)
    if value is None:
        raise UserInputError("a file hash is hexadecimal: AutoV1, AutoV2, AutoV3, SHA256, CRC32 or BLAKE3")
    root = api_root(base_url)
    client = _Client(
        root + "/model-versions", api_token(token), timeout, RetryPolicy(max_retries=3), time.sleep,
        CrawlReport(),
    )  # fmt: skip
    try:
        return client.get([], f"{root}/model-versions/by-hash/{value}")
    except _NotFound:
        return None
    finally:
        client.close()


def _dump_position(position: _Position) -> str:
    return json.dumps({"params": position.params, "fetched": position.fetched})


def _load_position(store: Store, key: str) -> _Position | None:
    raw = store.get_state(key)
    if raw is None:
        return None
    try:
        saved = json.loads(raw)
        params = [(str(k), str(v)) for k, v in saved["params"]]
        return _Position(params, int(saved["fetched"]))
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable position: start over, upserts are idempotent
